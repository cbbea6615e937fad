package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// procFile is /proc/<pid>/<name>, or this process's (pid 0).
func procFile(pid int, name string) string {
	if pid > 0 {
		return fmt.Sprintf("/proc/%d/%s", pid, name)
	}
	return "/proc/self/" + name
}

// procCPU returns utime+stime of pid (0: this process) in clock ticks, from
// /proc/<pid>/stat (fields 14 and 15; field 2, comm, may hold spaces and
// parentheses, so fields are counted after its closing parenthesis).
func procCPU(pid int) (int64, error) {
	path := procFile(pid, "stat")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: unexpected format", path)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: unexpected format", path)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: unexpected format", path)
	}
	return ut + st, nil
}

// procPeakRSSKB returns VmHWM (peak resident set size) of pid in kB.
func procPeakRSSKB(pid int) (int64, error) {
	path := procFile(pid, "status")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM", path)
}

// readHostCPU returns the machine's CPU time in clock ticks (all CPUs) from
// /proc/stat: task time (user, nice, system: what processes run, which
// per-process utime+stime add up to) and interrupt time (irq, softirq:
// much of loopback networking, charged to no process).
func readHostCPU() (task, irq int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected format")
	}
	var v [7]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: unexpected format")
		}
	}
	// user nice system idle iowait irq softirq (steal, guest follow;
	// guest time is already in user).
	return v[0] + v[1] + v[2], v[5] + v[6], nil
}

// hostBusy is the machine's task time in clock ticks.
func hostBusy() (int64, error) {
	t, _, err := readHostCPU()
	return t, err
}

// hostIRQ is the machine's interrupt time in clock ticks.
func hostIRQ() (int64, error) {
	_, i, err := readHostCPU()
	return i, err
}

// cpuWindow is a CPU-time counter read at a window's start and end.
type cpuWindow struct {
	pid        int // -1: the host's task time; -2: the host's interrupt time; 0: this process
	start, end int64
}

func (w *cpuWindow) read() int64 {
	var v int64
	var err error
	switch {
	case w.pid == -1:
		v, err = hostBusy()
	case w.pid == -2:
		v, err = hostIRQ()
	default:
		v, err = procCPU(w.pid)
	}
	if err != nil {
		return 0
	}
	return v
}

func (w *cpuWindow) begin()  { w.start = w.read() }
func (w *cpuWindow) finish() { w.end = w.read() }

func (w cpuWindow) seconds() float64 {
	if w.end < w.start {
		return 0
	}
	return float64(w.end-w.start) / clockTicks
}

func (w cpuWindow) same(o cpuWindow) bool {
	self := os.Getpid()
	norm := func(p int) int {
		if p == 0 {
			return self
		}
		return p
	}
	return w.pid >= 0 && o.pid >= 0 && norm(w.pid) == norm(o.pid)
}
