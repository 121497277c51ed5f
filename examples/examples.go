// Package examples holds the example source trees, embedded in the binary so that an
// installed promoter has them: `promoter dev` builds hello from any working directory. It
// owns the files only; it must not build or run anything.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed hello
var trees embed.FS

// Hello is the source tree of promoter dev's example pipeline (examples/hello): the
// Dockerfile and the page it serves, with paths relative to the tree's root.
func Hello() fs.FS {
	sub, err := fs.Sub(trees, "hello")
	if err != nil {
		panic(err) // "hello" is a valid path; fs.Sub fails on nothing else
	}
	return sub
}
