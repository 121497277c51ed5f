package config

import (
	"reflect"
	"strings"

	"github.com/promoter-dev/promoter/internal/events"
)

// Secret is the secret reference of Auth at key, a configuration key under auth such as
// "auth.harbor.token" (events.Receivers names each receiver's); ok is false when no Secret
// field of Auth has that key.
func (a Auth) Secret(key string) (s Secret, ok bool) {
	rest, ok := strings.CutPrefix(key, "auth.")
	if !ok {
		return "", false
	}
	v := reflect.ValueOf(a)
	for _, name := range strings.Split(rest, ".") {
		if v, ok = field(v, name); !ok {
			return "", false
		}
	}
	s, ok = v.Interface().(Secret)
	return s, ok
}

// field is the field of the struct v whose mapstructure key is name.
func field(v reflect.Value, name string) (reflect.Value, bool) {
	if v.Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	for i := range v.NumField() {
		if v.Type().Field(i).Tag.Get("mapstructure") == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// validateReceiverSecrets checks that the secret of every webhook receiver (events.Receivers)
// resolves.
func (c *Config) validateReceiverSecrets(ps *problems) {
	for _, e := range events.Receivers {
		s, ok := c.Auth.Secret(e.SecretKey)
		if !ok {
			ps.add(e.SecretKey, "is the secret of the %s receiver but no key of the configuration", e.Name)
			continue
		}
		checkSecret(ps, e.SecretKey, s)
	}
}
