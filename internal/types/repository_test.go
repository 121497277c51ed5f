package types

import "testing"

func TestRepositoryOnHost(t *testing.T) {
	tests := []struct {
		name string
		repo Repository
		host string
		want bool
	}{
		{name: "same host", repo: "registry.example/acme/web", host: "registry.example", want: true},
		{name: "host case is ignored", repo: "Registry.Example/acme/web", host: "REGISTRY.example", want: true},
		{name: "same host and port", repo: "127.0.0.1:5000/acme/web", host: "127.0.0.1:5000", want: true},
		{name: "other port", repo: "127.0.0.1:5000/acme/web", host: "127.0.0.1:5001"},
		{name: "port missing", repo: "registry.example:5000/acme/web", host: "registry.example"},
		{name: "other host", repo: "registry.example/acme/web", host: "proxy.example"},
		{name: "a path is not a host", repo: "registry.example/acme/web", host: "registry.example/acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.repo.OnHost(tt.host); got != tt.want {
				t.Errorf("Repository(%q).OnHost(%q): got %v, want %v", tt.repo, tt.host, got, tt.want)
			}
		})
	}
}
