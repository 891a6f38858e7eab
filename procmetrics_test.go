package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "42 (a) b (c) S 1 777 777 0 -1 4194560 100 0 0 0 250 170 0 0 20 0 9 0 1234 50000000 300 18446744073709551615\n"
	st, ok := parseProcStat([]byte(line), 4096)
	want := procStat{cpuSeconds: 4.2, startTime: 12.34, vsizeBytes: 50e6, rssBytes: 300 * 4096}
	if !ok || st != want {
		t.Fatalf("parseProcStat = %+v, %v; want %+v", st, ok, want)
	}
	for _, bad := range []string{"42 (x) S 1", "no parenthesis", "42 (x) S 1 2 3 4 5 6 7 8 9 10 x 12 13 14 15 16 17 18 19 20 21 22"} {
		if _, ok := parseProcStat([]byte(bad), 4096); ok {
			t.Errorf("parseProcStat(%q) accepted", bad)
		}
	}
}

func TestProcessAndGoMetrics_Exposition(t *testing.T) {
	var sb strings.Builder
	bw := bufio.NewWriter(&sb)
	writeProcessMetrics(promWriter{bw})
	writeGoMetrics(promWriter{bw})
	bw.Flush()
	s := checkExposition(t, sb.String())
	if s["go_goroutines{}"] < 1 || s["go_memstats_alloc_bytes_total{}"] <= 0 || s["go_sched_gomaxprocs_threads{}"] < 1 {
		t.Errorf("go series: %v", s)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: process series not written")
	}
	// This process has this test's files open, is resident, and started
	// after the machine booted and before now.
	if s["process_open_fds{}"] < 3 || s["process_max_fds{}"] < s["process_open_fds{}"] ||
		s["process_resident_memory_bytes{}"] <= 0 || s["process_cpu_seconds_total{}"] < 0 {
		t.Errorf("process series: %v", s)
	}
	if st, now := s["process_start_time_seconds{}"], float64(time.Now().Unix()); st > now+1 || st < now-3600 {
		t.Errorf("process_start_time_seconds = %v, want this test process's start, now is %v", st, now)
	}
}
