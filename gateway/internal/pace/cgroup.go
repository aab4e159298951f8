package pace

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cgroupQuota returns the tightest CPU quota, in cores, along this
// process's cgroup path, for cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us
// over cpu.cfs_period_us); false when there is none.
func cgroupQuota() (float64, bool) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0, false
	}
	defer mi.Close()
	mounts := cgroupMounts(mi)
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return quotaOf(f, mounts)
}

// mount is a cgroup file system as /proc/self/mountinfo shows it: the
// hierarchy's directory it exposes (root) and where (point).
type mount struct {
	root, point string
	v2          bool
}

// cgroupMounts finds the cgroup v2 mounts and the v1 mounts holding the
// cpu controller, as the Go runtime does: the directory names vary
// (cpu, cpu,cpuacct, cpuset,cpu,cpuacct...), the mountinfo does not lie.
func cgroupMounts(r io.Reader) []mount {
	var out []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// ID parent major:minor root point options [optional...] - fstype source superoptions
		before, after, ok := strings.Cut(sc.Text(), " - ")
		f, g := strings.Fields(before), strings.Fields(after)
		if !ok || len(f) < 5 || len(g) < 3 {
			continue
		}
		switch {
		case g[0] == "cgroup2":
			out = append(out, mount{root: unescape(f[3]), point: unescape(f[4]), v2: true})
		case g[0] == "cgroup" && slices.Contains(strings.Split(g[2], ","), "cpu"):
			out = append(out, mount{root: unescape(f[3]), point: unescape(f[4])})
		}
	}
	return out
}

// unescape undoes mountinfo's octal escapes (\040 for a space...).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// quotaOf reads a /proc/<pid>/cgroup listing against the cgroup mounts.
func quotaOf(listing io.Reader, mounts []mount) (float64, bool) {
	best, found := 0.0, false
	sc := bufio.NewScanner(listing)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		v2 := parts[0] == "0" && parts[1] == ""
		if !v2 && !slices.Contains(strings.Split(parts[1], ","), "cpu") {
			continue
		}
		for _, m := range mounts {
			if m.v2 != v2 {
				continue
			}
			read := readV1
			if v2 {
				read = readV2
			}
			if q, ok := m.walk(parts[2], read); ok && (!found || q < best) {
				best, found = q, true
			}
		}
	}
	return best, found
}

// walk reads the quota of every cgroup from the process's (path, as
// /proc/self/cgroup names it) up to the mount's top, and returns the
// tightest. A path outside what the mount exposes is not this mount's.
func (m mount) walk(path string, read func(dir string) (float64, bool)) (float64, bool) {
	rel, err := filepath.Rel(m.root, filepath.Clean("/"+path))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return 0, false
	}
	best, found := 0.0, false
	for dir := filepath.Join(m.point, rel); ; dir = filepath.Dir(dir) {
		if q, ok := read(dir); ok && (!found || q < best) {
			best, found = q, true
		}
		if dir == m.point || dir == filepath.Dir(dir) {
			return best, found
		}
	}
}

// readV2 reads cpu.max: "max 100000" (no quota) or "25000 100000".
func readV2(dir string) (float64, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0, false
	}
	return ratio(f[0], f[1])
}

// readV1 reads cpu.cfs_quota_us (-1: no quota) and cpu.cfs_period_us.
func readV1(dir string) (float64, bool) {
	q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
	p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return ratio(strings.TrimSpace(string(q)), strings.TrimSpace(string(p)))
}

func ratio(quota, period string) (float64, bool) {
	q, err1 := strconv.ParseFloat(quota, 64)
	p, err2 := strconv.ParseFloat(period, 64)
	if err1 != nil || err2 != nil || q <= 0 || p <= 0 {
		return 0, false
	}
	return q / p, true
}
