package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal says whether w is a terminal (progress bars go only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// humanBytes formats n bytes with IEC units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// createUI shows bundle create's progress on stderr: a bar on a terminal,
// one plain line per image otherwise, nothing with --quiet.
type createUI struct {
	w     io.Writer
	quiet bool
	tty   bool

	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	down int64
}

func newCreateUI(w io.Writer, quiet bool) *createUI {
	return &createUI{w: w, quiet: quiet, tty: !quiet && isTerminal(w)}
}

func (u *createUI) printf(format string, a ...any) {
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

func (u *createUI) Retry(what string, attempt int, reason string, wait time.Duration) {
	u.printf("retry %d: %s: %s (waiting %s)\n", attempt, what, reason, wait.Round(time.Millisecond))
}

func (u *createUI) Downloaded(n int64) {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.down += n
	if u.bar != nil {
		u.bar.Describe(fmt.Sprintf("writing (downloaded %s)", humanBytes(u.down)))
	}
}

func (u *createUI) Resolved(ref string, digest v1.Hash, platforms []string) {
	u.printf("resolved %s %s [%s]\n", ref, digest, strings.Join(platforms, ", "))
}

func (u *createUI) Planned(blobs int, total, toDownload int64) {
	u.printf("writing %d blobs (%s), %s to download\n", blobs, humanBytes(total), humanBytes(toDownload))
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(u.w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetDescription("writing"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

func (u *createUI) Written(n int64) {
	if !u.tty {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bar != nil {
		_ = u.bar.Add64(n)
	}
}

func (u *createUI) finish() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.bar != nil {
		_ = u.bar.Finish()
		u.bar = nil
	}
}
