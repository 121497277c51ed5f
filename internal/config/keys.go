package config

import (
	"reflect"
	"sort"
	"time"
)

// AllKeys lists every configuration key, derived from the Config struct: scalars as dotted
// paths ("nats.url") and fields of list elements with "[]" ("pipelines[].promote[].to").
// The README's configuration reference is checked against it.
func AllKeys() []string {
	var out []string
	walkKeys(reflect.TypeOf(Config{}), "", &out)
	sort.Strings(out)
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

func walkKeys(t reflect.Type, prefix string, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Struct && ft != durationType:
			walkKeys(ft, key, out)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			walkKeys(ft.Elem(), key+"[]", out)
		default:
			*out = append(*out, key)
		}
	}
}
