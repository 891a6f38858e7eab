package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// balancer is the balancer under test: a child process in a process group
// of its own, its configuration file, and what it writes on stderr.
type balancer struct {
	bin, dir, cfgPath string
	addr, admin       string // 127.0.0.1:port of the proxy and of the admin API
	accessLog         bool

	cmd     *exec.Cmd
	exited  chan struct{} // closed once the process has exited and its stderr is read
	waitErr error         // set before exited is closed
	log     *stderrLog
}

// build builds the balancer from the module at root into dir.
func build(root, dir string, race bool) (string, error) {
	bin := filepath.Join(dir, "stdlb")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// freePorts returns n loopback ports that were free a moment ago; all n
// are held until the end, so none is handed out twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// backendSet is what a configuration generation routes to.
type backendSet struct {
	urls      []string
	algorithm string
}

// writeConfig writes the balancer's configuration for set, atomically (a
// reload must never read half a file). The rate limiter is off: every
// client here is 127.0.0.1, and its 429s would only hide the rest.
func (b *balancer) writeConfig(set backendSet) error {
	var backends []map[string]any
	for _, u := range set.urls {
		backends = append(backends, map[string]any{"url": u})
	}
	cfg := map[string]any{
		"listen":    b.addr,
		"algorithm": set.algorithm,
		"backends":  backends,
		"health_check": map[string]any{"path": "/healthz", "interval": "500ms", "timeout": "500ms",
			"healthy_threshold": 1, "unhealthy_threshold": 2},
		"retries": 2,
		"timeouts": map[string]string{"read_header": "5s", "read_body": "10s", "write": "30s", "idle": "30s",
			"backend_dial": "1s", "backend_response": "3s", "shutdown": "10s"},
		"access_log": b.accessLog,
		"log_format": "text",
		"rate_limit": map[string]any{"enabled": false, "clients_file": filepath.Join(b.dir, "clients.json")},
		"admin":      map[string]string{"listen": b.admin, "token_env": "STDLB_SOAK_ADMIN_TOKEN"},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	tmp := b.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return os.Rename(tmp, b.cfgPath)
}

// shutdownGrace is timeouts.shutdown in writeConfig.
const shutdownGrace = 10 * time.Second

// startBalancer starts bin on two free ports with the configuration for
// set; stdout (the access log) goes to a file in dir, stderr to the soak,
// which groups its warnings and errors and keeps a copy in a file.
func startBalancer(bin, dir string, set backendSet, accessLog bool) (*balancer, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	b := &balancer{bin: bin, dir: dir, cfgPath: filepath.Join(dir, "config.json"), accessLog: accessLog,
		addr: fmt.Sprintf("127.0.0.1:%d", ports[0]), admin: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		exited: make(chan struct{}), log: newStderrLog()}
	if err := b.writeConfig(set); err != nil {
		return nil, err
	}
	access, err := os.Create(filepath.Join(dir, "access.log"))
	if err != nil {
		return nil, err
	}
	defer access.Close() // the child has its own copy
	copyTo, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		return nil, err
	}
	b.cmd = exec.Command(bin, "-config", b.cfgPath)
	b.cmd.Dir = dir
	b.cmd.Stdout = access
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		copyTo.Close()
		return nil, err
	}
	// Its own process group, and killed should the soak die first.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := b.cmd.Start(); err != nil {
		copyTo.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { // ends when the process exits
		b.log.read(stderr, copyTo)
		copyTo.Close()
		b.waitErr = b.cmd.Wait()
		close(b.exited)
	}()
	return b, nil
}

func (b *balancer) pid() int { return b.cmd.Process.Pid }

// alive reports whether the process is still running.
func (b *balancer) alive() bool {
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// waitReady polls the admin API and a request through the proxy until
// both answer 200, the process exits, or timeout passes.
func (b *balancer) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, u := range []string{"http://" + b.admin + "/healthz", "http://" + b.addr + "/healthz"} {
			resp, err := client.Get(u)
			if err != nil {
				ok = false
				break
			}
			resp.Body.Close()
			ok = ok && resp.StatusCode == http.StatusOK
		}
		if ok {
			return nil
		}
		if !b.alive() {
			return fmt.Errorf("the balancer exited at start (%v); its stderr ends:\n%s", b.waitErr, b.log.tailText())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the balancer did not get ready within %v; its stderr ends:\n%s", timeout, b.log.tailText())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// reload rewrites the configuration for set and sends SIGHUP.
func (b *balancer) reload(set backendSet) error {
	if err := b.writeConfig(set); err != nil {
		return err
	}
	return b.cmd.Process.Signal(syscall.SIGHUP)
}

// stop sends SIGTERM and waits for the exit, up to grace; after that it
// kills the process group. It returns the exit status (-1 for a signal)
// and how long the exit took, and whether it came within grace.
func (b *balancer) stop(grace time.Duration) (code int, took time.Duration, inTime bool) {
	start := time.Now()
	b.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-b.exited:
		inTime = true
	case <-t.C:
		syscall.Kill(-b.pid(), syscall.SIGKILL)
		<-b.exited
	}
	took = time.Since(start)
	syscall.Kill(-b.pid(), syscall.SIGKILL) // anything it forked; ESRCH when nothing is left
	return b.cmd.ProcessState.ExitCode(), took, inTime
}

// kill ends the process group at once, on the soak's error paths.
func (b *balancer) kill() {
	if b.alive() {
		syscall.Kill(-b.pid(), syscall.SIGKILL)
		<-b.exited
	}
}

// procSample is what /proc says of a process.
type procSample struct {
	rssKB, threads int64
	fds            int
}

// readProc reads the RSS and thread count from /proc/PID/status and counts
// the entries of /proc/PID/fd.
func readProc(pid int) (procSample, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, err
	}
	s, err := parseStatus(string(data))
	if err != nil {
		return s, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.fds = len(fds)
	return s, nil
}

// parseStatus reads VmRSS (kB) and Threads from a /proc/PID/status text.
func parseStatus(text string) (procSample, error) {
	var s procSample
	found := 0
	for line := range strings.SplitSeq(text, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		switch name {
		case "VmRSS":
			s.rssKB, _ = strconv.ParseInt(f[0], 10, 64)
			found++
		case "Threads":
			s.threads, _ = strconv.ParseInt(f[0], 10, 64)
			found++
		}
	}
	if found != 2 {
		return s, errors.New("/proc status: no VmRSS or Threads")
	}
	return s, nil
}

// gauges reads from the admin API's metrics the requests in flight (over
// every backend) and the upgraded connections open now.
func (b *balancer) gauges(client *http.Client) (inFlight, upgraded int64, err error) {
	resp, err := client.Get("http://" + b.admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, 0, err
	}
	inFlight, upgraded = parseGauges(string(text))
	return inFlight, upgraded, nil
}

// parseGauges sums stdlb_backend_in_flight and reads
// stdlb_upgraded_connections from Prometheus text.
func parseGauges(text string) (inFlight, upgraded int64) {
	for line := range strings.SplitSeq(text, "\n") {
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '}'); i >= 0 {
			name, rest = line[:i+1], strings.TrimSpace(line[i+1:])
		}
		v, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(name, "stdlb_backend_in_flight"):
			inFlight += int64(v)
		case name == "stdlb_upgraded_connections":
			upgraded = int64(v)
		}
	}
	return inFlight, upgraded
}

// countLines counts the lines of a file (the access log).
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			n++
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil && err != bufio.ErrBufferFull {
			return n, err
		}
	}
}
