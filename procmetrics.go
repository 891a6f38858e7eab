package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// writeProcessMetrics writes the process_* series every Prometheus
// exporter has, with the names and meanings of the official Go client's
// process collector, read from /proc/self. Where /proc cannot be read (not
// Linux) the series are left out rather than reported as zero.
func writeProcessMetrics(p promWriter) {
	if st, ok := readProcStat(); ok {
		p.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.")
		p.sample("process_cpu_seconds_total", st.cpuSeconds)
		p.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.")
		p.sample("process_resident_memory_bytes", st.rssBytes)
		p.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
		p.sample("process_virtual_memory_bytes", st.vsizeBytes)
		if st.startTime > 0 {
			p.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.")
			p.sample("process_start_time_seconds", st.startTime)
		}
	}
	if f, err := os.Open("/proc/self/fd"); err == nil {
		names, err := f.Readdirnames(-1)
		f.Close()
		if err == nil {
			p.family("process_open_fds", "gauge", "Number of open file descriptors.")
			p.sample("process_open_fds", float64(len(names)-1)) // less the one reading the directory
		}
	}
	if n, ok := maxOpenFiles(); ok {
		p.family("process_max_fds", "gauge", "Maximum number of open file descriptors.")
		p.sample("process_max_fds", n)
	}
}

// procStat is what writeProcessMetrics takes from /proc/self/stat.
type procStat struct {
	cpuSeconds, rssBytes, vsizeBytes, startTime float64
}

// userHZ is the unit of /proc's CPU times: 100 on every architecture Linux
// runs Go on (the official client's procfs assumes the same).
const userHZ = 100

// readProcStat reads /proc/self/stat and, for the start time, the boot
// time in /proc/stat.
func readProcStat() (procStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	st, ok := parseProcStat(b, os.Getpagesize())
	if !ok {
		return st, false
	}
	if boot, ok := bootTime(); ok {
		st.startTime += boot
	} else {
		st.startTime = 0
	}
	return st, true
}

// parseProcStat reads a /proc/PID/stat line. The command name, in
// parentheses, may hold spaces and parentheses itself, so the fields are
// counted from the last ')'. startTime is in seconds since boot.
func parseProcStat(b []byte, pageSize int) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 22 {
		return procStat{}, false
	}
	var v [5]float64
	for j, field := range []int{14, 15, 22, 23, 24} { // utime, stime, starttime, vsize, rss
		n, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return procStat{}, false
		}
		v[j] = float64(n)
	}
	return procStat{
		cpuSeconds: (v[0] + v[1]) / userHZ,
		startTime:  v[2] / userHZ,
		vsizeBytes: v[3],
		rssBytes:   v[4] * float64(pageSize),
	}, true
}

// bootTime returns the btime line of /proc/stat: when the machine booted,
// in seconds since the Unix epoch.
func bootTime() (float64, bool) { return procNumber("/proc/stat", "btime ") }

// maxOpenFiles returns the soft limit on open files from
// /proc/self/limits, which unlike getrlimit(2) compiles everywhere.
func maxOpenFiles() (float64, bool) { return procNumber("/proc/self/limits", "Max open files") }

// procNumber returns the first number after prefix on the first line of
// the file that starts with it; false if there is none ("unlimited").
func procNumber(path, prefix string) (float64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0, false
			}
			n, err := strconv.ParseUint(f[0], 10, 64)
			return float64(n), err == nil
		}
	}
	return 0, false
}

// goMetricNames are the runtime/metrics samples behind writeGoMetrics, which
// unlike runtime.ReadMemStats do not stop the world.
var goMetricNames = []string{
	"/sched/goroutines:goroutines",
	"/sched/threads/total:threads",
	"/sched/gomaxprocs:threads",
	"/memory/classes/heap/objects:bytes",
	"/gc/heap/allocs:bytes",
	"/gc/heap/allocs:objects",
	"/gc/heap/frees:objects",
	"/gc/heap/tiny/allocs:objects",
	"/gc/heap/objects:objects",
	"/gc/heap/goal:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/cycles/total:gc-cycles",
	"/gc/gogc:percent",
	"/gc/gomemlimit:bytes",
}

// writeGoMetrics writes the go_* series of the official Go client's
// collector (go_goroutines, go_memstats_*, ...) from runtime/metrics.
func writeGoMetrics(p promWriter) {
	samples := make([]metrics.Sample, len(goMetricNames))
	for i, n := range goMetricNames {
		samples[i].Name = n
	}
	metrics.Read(samples)
	v := map[string]float64{}
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v[s.Name] = float64(s.Value.Uint64())
		case metrics.KindFloat64:
			v[s.Name] = s.Value.Float64()
		}
	}
	tiny := v["/gc/heap/tiny/allocs:objects"] // counted as both allocated and freed, as MemStats does
	for _, m := range []struct {
		name, typ, help string
		value           float64
	}{
		{"go_goroutines", "gauge", "Number of goroutines that currently exist.", v["/sched/goroutines:goroutines"]},
		{"go_threads", "gauge", "Number of OS threads created.", v["/sched/threads/total:threads"]},
		{"go_sched_gomaxprocs_threads", "gauge", "The current runtime.GOMAXPROCS setting.", v["/sched/gomaxprocs:threads"]},
		{"go_memstats_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use.", v["/memory/classes/heap/objects:bytes"]},
		{"go_memstats_alloc_bytes_total", "counter", "Total number of heap bytes allocated, even if freed.", v["/gc/heap/allocs:bytes"]},
		{"go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use.", v["/memory/classes/heap/objects:bytes"]},
		{"go_memstats_heap_objects", "gauge", "Number of currently allocated objects.", v["/gc/heap/objects:objects"]},
		{"go_memstats_mallocs_total", "counter", "Total number of heap objects allocated.", v["/gc/heap/allocs:objects"] + tiny},
		{"go_memstats_frees_total", "counter", "Total number of heap objects frees.", v["/gc/heap/frees:objects"] + tiny},
		{"go_memstats_next_gc_bytes", "gauge", "Number of heap bytes when next garbage collection will take place.", v["/gc/heap/goal:bytes"]},
		{"go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system.", v["/memory/classes/total:bytes"]},
		{"go_memstats_stack_inuse_bytes", "gauge", "Number of bytes obtained from system for stack allocator.", v["/memory/classes/heap/stacks:bytes"]},
		{"go_gc_cycles_total", "counter", "Count of all completed GC cycles.", v["/gc/cycles/total:gc-cycles"]},
		{"go_gc_gogc_percent", "gauge", "Heap size target percentage configured by the user, otherwise 100 (GOGC).", v["/gc/gogc:percent"]},
		{"go_gc_gomemlimit_bytes", "gauge", "Go runtime memory limit configured by the user, otherwise math.MaxInt64 (GOMEMLIMIT).", v["/gc/gomemlimit:bytes"]},
	} {
		p.family(m.name, m.typ, m.help)
		p.sample(m.name, m.value)
	}
	p.family("go_info", "gauge", "Information about the Go environment.")
	p.sample("go_info", 1, "version", runtime.Version())
}
