package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is one child process the suite started, in a process group of its
// own so that stopping it also stops whatever it forked (nginx's workers).
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once Wait returns
	waitErr error         // set before exited is closed
}

// procs owns every child the suite started, so one deferred stopAll ends
// them on every path: success, error, and SIGINT/SIGTERM.
type procs struct {
	mu   sync.Mutex // guards list
	list []*proc
}

// start runs bin with args, stdout and stderr going to DIR/name.log.
func (ps *procs) start(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close() // the child holds its own copy
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Should the suite itself be killed outright, the kernel still
		// tells each child to go.
		Pdeathsig: syscall.SIGTERM,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { // ends when the process exits; stopAll makes sure it does
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// pid returns the process's PID, which is also its process-group ID.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM to the process group, then SIGKILL to what is left
// after grace.
func (p *proc) stop(grace time.Duration) {
	pgid := p.pid()
	syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	}
	// The leader may be gone while forked children linger; the group
	// kill reaches them either way, and ESRCH just means nothing was left.
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.exited
	// SIGKILL is delivered asynchronously: wait (bounded) until no live
	// member is left, so the caller can rely on the ports being free.
	deadline := time.Now().Add(grace)
	for live, _, _ := scanGroup(pgid); live > 0 && time.Now().Before(deadline); live, _, _ = scanGroup(pgid) {
		syscall.Kill(-pgid, syscall.SIGKILL)
		t.Reset(10 * time.Millisecond)
		<-t.C
	}
}

// stopAll stops every process started, last started first.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop(3 * time.Second)
	}
}

// logTail returns the last bytes of the process's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(bytes.TrimSpace(b))
}

// waitReady polls url until it answers 200, the process exits, or timeout
// passes.
func waitReady(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond,
		// The TLS rows' certificate is self-signed; this is loopback.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if resp, err := client.Do(req); err != nil {
			last = err
		} else {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %v (%v); its log ends:\n%s", p.name, url, timeout, last, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("%s exited (%v); its log ends:\n%s", p.name, p.waitErr, p.logTail())
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All n listeners are held until the end so no port is handed out twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// cpuTicks returns the user+system CPU time, in clock ticks, of every
// live process in process group pgid, read from /proc/PID/stat.
func cpuTicks(pgid int) (int64, error) {
	_, ticks, err := scanGroup(pgid)
	return ticks, err
}

// scanGroup returns how many live (not zombie) processes are in group
// pgid and their CPU ticks, from /proc.
func scanGroup(pgid int) (live int, ticks int64, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, fmt.Errorf("scan group %d: %w", pgid, err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited since ReadDir
		}
		st, err := parseStat(b)
		if err != nil || st.pgrp != pgid || st.state == 'Z' || st.state == 'X' {
			continue
		}
		live++
		ticks += st.ticks
	}
	return live, ticks, nil
}

// procStat is what the suite reads from /proc/PID/stat.
type procStat struct {
	state byte
	pgrp  int
	ticks int64 // utime + stime
}

// parseStat reads the state, process group and utime+stime from a
// /proc/PID/stat line. The command name, in parentheses, may hold spaces and ')', so
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("stat: no ')'")
	}
	// After ") ": field 3 (state) is index 0, so field n is index n-3.
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("stat: %d fields after the name, want 13 or more", len(f))
	}
	pgrp, err1 := strconv.Atoi(string(f[5-3]))
	utime, err2 := strconv.ParseInt(string(f[14-3]), 10, 64)
	stime, err3 := strconv.ParseInt(string(f[15-3]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("stat: %w", err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, ticks: utime + stime}, nil
}

// clockTicks returns the kernel's USER_HZ, the unit of /proc's CPU times,
// from the AT_CLKTCK entry the kernel puts in every process's auxiliary
// vector; 100, Linux's value on every common architecture, if unreadable.
func clockTicks() int64 {
	const atClkTck = 17
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for ; len(b) >= 16; b = b[16:] { // (type, value) pairs of 64-bit words
		if binary.NativeEndian.Uint64(b) == atClkTck {
			if v := int64(binary.NativeEndian.Uint64(b[8:])); v > 0 {
				return v
			}
		}
	}
	return 100
}
