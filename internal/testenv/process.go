package testenv

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one child process the harness started, with its output in a log
// file.
type process struct {
	name    string // for messages
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // valid after done is closed
}

// startProcess starts path with args, its stdout and stderr appended to
// logPath. The child gets deathSig when the thread that started it dies: the
// goroutine that starts it is locked to its thread and stays there until the
// child has been reaped, so that thread dies only with the test binary.
func startProcess(name, path string, args []string, env []string, logPath string, deathSig syscall.Signal) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: opening its log: %w", name, err)
	}
	defer logFile.Close() // the child has its own copy once started

	cmd := exec.Command(path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = env
	attr, err := deathSigAttr(deathSig)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	cmd.SysProcAttr = attr
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}

	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return p, nil
}

// PID returns the process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited (and been reaped).
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, waits up to grace for the process to exit, and then kills
// it. forced says whether SIGKILL was needed; alreadyExited whether the process
// had exited before stop was called.
func (p *process) stop(sig syscall.Signal, grace time.Duration) (forced, alreadyExited bool) {
	if p.exited() {
		return false, true
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		sig = syscall.SIGKILL
	}
	if sig != syscall.SIGKILL {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.done:
			return false, false
		case <-timer.C:
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return sig != syscall.SIGKILL, false
}

// logTail returns the end of the process's log, for error messages.
func (p *process) logTail() string {
	return fileTail(p.logPath, 4096)
}

func fileTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	prefix := ""
	if fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return fmt.Sprintf("(no log: %v)", err)
		}
		prefix = "…"
	}
	b, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "(empty log)"
	}
	return prefix + s
}

// processAlive reports whether a process with this PID exists and is not a
// zombie.
func processAlive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// Format: pid (comm) state …; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return true
	}
	return s[i+2] != 'Z'
}

// ProcessAlive reports whether a process with this PID is running (it exists
// and is not a zombie). Tests use it to check that Stop left nothing behind.
func ProcessAlive(pid int) bool { return processAlive(pid) }

// processesMentioning returns the PIDs of running processes, other than this
// one, whose command line contains s. The harness uses it with the unique temp
// paths of a dockerd it started to find the processes that dockerd started
// (its containerd and containerd's shims).
func processesMentioning(s string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), s) || !processAlive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// waitGone waits up to timeout for none of pids to be alive; it returns those
// still alive.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(50 * time.Millisecond)
	}
}
