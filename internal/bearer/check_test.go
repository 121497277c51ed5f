package bearer

import (
	"errors"
	"net/http/httptest"
	"testing"
)

func TestCheck(t *testing.T) {
	const want = "s3cret"
	for _, tc := range []struct {
		name    string
		header  string // Authorization; "" sends none
		wantErr error
	}{
		{name: "bearer", header: "Bearer s3cret"},
		{name: "scheme in lower case", header: "bearer s3cret"},
		{name: "scheme in upper case", header: "BEARER s3cret"},
		{name: "spaces around the token", header: "Bearer  s3cret "},
		{name: "no header", wantErr: ErrMissing},
		{name: "basic", header: "Basic czNjcmV0", wantErr: ErrScheme},
		{name: "bare token", header: "s3cret", wantErr: ErrScheme},
		{name: "wrong token", header: "Bearer s3creT", wantErr: ErrWrong},
		{name: "shorter token", header: "Bearer s3cre", wantErr: ErrWrong},
		{name: "longer token", header: "Bearer s3cret-and-more", wantErr: ErrWrong},
		{name: "scheme without token", header: "Bearer", wantErr: ErrWrong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			if err := Check(req, want); !errors.Is(err, tc.wantErr) {
				t.Errorf("Check with %q: got %v, want %v", tc.header, err, tc.wantErr)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		got, want string
		equal     bool
	}{
		{"a", "a", true},
		{"", "", true},
		{"a", "b", false},
		{"a", "aa", false},
		{"", "a", false},
	} {
		if got := Equal(tc.got, tc.want); got != tc.equal {
			t.Errorf("Equal(%q, %q) = %v, want %v", tc.got, tc.want, got, tc.equal)
		}
	}
}
