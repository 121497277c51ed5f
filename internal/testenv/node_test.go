package testenv

import "testing"

func TestPathMapper(t *testing.T) {
	m := pathMapper("/r/1", []string{"/home/user", "/run/user/1000", "/home/user/.docker", "/run/secrets/"})
	tests := []struct {
		name, in, want string
	}{
		{"a mount path", "/home/user/.docker", "/r/1/home/user/.docker"},
		{"under a root", "/home/user/.local/share/buildkit", "/r/1/home/user/.local/share/buildkit"},
		{"after =", "src=/run/secrets/token", "src=/r/1/run/secrets/token"},
		{"in a list", "id=a,src=/run/secrets/a,dst=/run/secrets/b", "id=a,src=/r/1/run/secrets/a,dst=/r/1/run/secrets/b"},
		{"after a space", "--config /home/user/x.toml", "--config /r/1/home/user/x.toml"},
		{"a socket", "unix:///run/user/1000/buildkit/buildkitd.sock", "unix:///r/1/run/user/1000/buildkit/buildkitd.sock"},
		{"a flag", "--oci-worker-no-process-sandbox", "--oci-worker-no-process-sandbox"},
		{"a longer name", "/home/username", "/home/username"},
		{"inside another path", "/opt/home/user", "/opt/home/user"},
		{"a URL", "git://127.0.0.1:1/home/user.git#abc", "git://127.0.0.1:1/home/user.git#abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
