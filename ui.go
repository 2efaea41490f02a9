package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bundle-tool/bundle/internal/space"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal says whether w is a terminal (progress bars go only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// humanBytes formats n bytes with IEC units (41.2 GiB), the same as the
// space check's messages.
func humanBytes(n int64) string { return space.Human(n) }

// statusUI is what every command shows on stderr: progress bars
// (progressbar/v3) only when stderr is a terminal, plain lines otherwise,
// nothing but errors with --quiet. It is safe for concurrent use.
type statusUI struct {
	w     io.Writer
	quiet bool
	tty   bool

	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func newStatusUI(w io.Writer, quiet bool) statusUI {
	return statusUI{w: w, quiet: quiet, tty: !quiet && isTerminal(w)}
}

// printf prints a line (clearing the bar first, so they do not mix).
func (u *statusUI) printf(format string, a ...any) {
	if u.quiet {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bar != nil {
		_ = u.bar.Clear()
	}
	fmt.Fprintf(u.w, format, a...)
}

// startBar replaces the bar with a new one of total bytes (-1: unknown,
// a spinner), on a terminal only.
func (u *statusUI) startBar(total int64, what string) {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endBarLocked()
	if total <= 0 {
		total = -1
	}
	u.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(u.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// barAdd, barSet and barDescribe update the bar, when there is one.
func (u *statusUI) barAdd(n int64) { u.withBar(func(b *progressbar.ProgressBar) { _ = b.Add64(n) }) }
func (u *statusUI) barSet(n int64) { u.withBar(func(b *progressbar.ProgressBar) { _ = b.Set64(n) }) }
func (u *statusUI) barDescribe(s string) {
	u.withBar(func(b *progressbar.ProgressBar) { b.Describe(s) })
}

func (u *statusUI) withBar(f func(*progressbar.ProgressBar)) {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bar != nil {
		f(u.bar)
	}
}

// endBar finishes and removes the bar.
func (u *statusUI) endBar() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.endBarLocked()
}

func (u *statusUI) endBarLocked() {
	if u.bar != nil {
		// Finish renders only when the throttle lets it, and only a
		// render clears a bar on finish: clear it here, so that what is
		// printed next starts on a clean line.
		_ = u.bar.Finish()
		_ = u.bar.Clear()
		u.bar = nil
	}
}

// retry prints a retry event (create and load).
func (u *statusUI) Retry(what string, attempt int, reason string, wait time.Duration) {
	u.printf("retry %d: %s: %s (waiting %s)\n", attempt, what, reason, wait.Round(time.Millisecond))
}

// createUI shows bundle create's progress: one line per resolved image,
// and on a terminal one bar over the two things create does once it has
// planned: fetching what the cache lacks and writing the file. Its total
// is the bytes to download plus the bytes to write, so the percentage,
// rate and ETA move with whichever phase is running (the write waits for
// the downloads of the blobs it reaches); its label says each phase's part.
type createUI struct {
	statusUI
	down, written atomic.Int64
	planned       atomic.Bool
	downBase      int64 // downloaded before the plan (manifests, configs)
	toDown, total int64
}

func newCreateUI(w io.Writer, quiet bool) *createUI {
	return &createUI{statusUI: newStatusUI(w, quiet)}
}

func (u *createUI) Downloaded(n int64) {
	after := u.down.Add(n)
	if u.tty && u.planned.Load() {
		// Bytes fetched again (a retry from the start) do not move the
		// bar past the download's part of it.
		before := max(after-n-u.downBase, 0)
		if add := min(after-u.downBase, u.toDown) - min(before, u.toDown); add > 0 {
			u.barAdd(add)
		}
		u.describe()
	}
}

func (u *createUI) Resolved(ref string, digest v1.Hash, platforms []string) {
	u.printf("resolved %s %s [%s]\n", ref, digest, strings.Join(platforms, ", "))
}

func (u *createUI) Planned(blobs int, total, toDownload int64) {
	u.printf("writing %d blobs (%s), %s to download\n", blobs, humanBytes(total), humanBytes(toDownload))
	u.downBase, u.toDown, u.total = u.down.Load(), toDownload, total
	u.startBar(toDownload+total, u.label(0, 0))
	u.planned.Store(true)
}

func (u *createUI) Written(n int64) {
	u.written.Add(n)
	u.barAdd(n)
	u.describe()
}

// label says how far each phase is: "fetched 12.0 MiB/236.9 MiB, wrote 0 B/300.1 MiB".
func (u *createUI) label(down, written int64) string {
	if u.toDown <= 0 {
		return fmt.Sprintf("writing %s/%s", humanBytes(written), humanBytes(u.total))
	}
	return fmt.Sprintf("fetched %s/%s, wrote %s/%s", humanBytes(min(down, u.toDown)), humanBytes(u.toDown), humanBytes(written), humanBytes(u.total))
}

func (u *createUI) describe() {
	if u.tty {
		u.barDescribe(u.label(u.down.Load()-u.downBase, u.written.Load()))
	}
}

func (u *createUI) finish() { u.endBar() }
