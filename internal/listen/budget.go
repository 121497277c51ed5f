package listen

// Bounds of AutoMaxConns.
const (
	minAutoConns = 16
	maxAutoConns = 1024
)

// AutoMaxConns is the default connection budget of a process: half its open-file limit
// (the other half is left to the bus, the registries and the store), at least 16 and at
// most 1024 (each connection may hold a buffered body). Without a readable limit it is 1024.
func AutoMaxConns() int { return autoMaxConns(openFileLimit()) }

func autoMaxConns(nofile uint64) int {
	if nofile == 0 {
		return maxAutoConns
	}
	return int(min(max(nofile/2, minAutoConns), maxAutoConns))
}
