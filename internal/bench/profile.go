package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// startProfile asks the daemon's pprof (the key pprof, on its metrics listener) for a CPU
// profile of e.cfg.ProfileSeconds and writes it to name in e.cfg.ProfileDir; the channel
// receives the outcome once the profile is written.
func (e *env) startProfile(ctx context.Context, d *daemonProc, name string) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- e.writeProfile(ctx, d, name)
	}()
	return done
}

func (e *env) writeProfile(ctx context.Context, d *daemonProc, name string) error {
	secs := e.cfg.ProfileSeconds
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", d.Ops, secs)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profiling the daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("profiling the daemon: GET %s: %s %s", url, resp.Status, b)
	}
	path := filepath.Join(e.cfg.ProfileDir, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profiling the daemon: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	e.logf("profile: wrote %s (go tool pprof -top %s)", path, path)
	return nil
}

// profileWhile profiles the daemon into name while it runs work again and again (rounds
// 0, 1, ...) until the profile is written. What work measures is not reported.
func (e *env) profileWhile(ctx context.Context, d *daemonProc, name string, work func(round int) error) error {
	done := e.startProfile(ctx, d, name)
	for round := 0; ; round++ {
		select {
		case err := <-done:
			return err
		default:
		}
		if err := work(round); err != nil {
			return err
		}
	}
}
