//go:build !unix

package listen

func openFileLimit() uint64 { return 0 }
