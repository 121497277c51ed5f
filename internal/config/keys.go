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

// setKeys lists the keys of v (a struct of the Config tree) that hold a non-zero value, as
// dotted paths relative to v ("cache.mode"); a list counts as one key.
func setKeys(v any) []string {
	var out []string
	walkSet(reflect.ValueOf(v), "", &out)
	return out
}

func walkSet(v reflect.Value, prefix string, out *[]string) {
	t := v.Type()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		key := tag
		if prefix != "" {
			key = prefix + "." + tag
		}
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.Struct && f.Type() != durationType:
			walkSet(f, key, out)
		case f.Kind() == reflect.Slice && f.Len() > 0, f.Kind() != reflect.Slice && !f.IsZero():
			*out = append(*out, key)
		}
	}
}
