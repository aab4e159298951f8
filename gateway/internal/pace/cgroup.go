package pace

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cgroupRoot is where the cgroup file systems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupQuota returns the tightest CPU quota, in cores, along this
// process's cgroup path, for cgroup v2 (cpu.max) or v1 (cpu.cfs_quota_us
// over cpu.cfs_period_us); false when there is none.
func cgroupQuota() (float64, bool) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	return quotaOf(f, cgroupRoot)
}

// quotaOf reads a /proc/<pid>/cgroup listing against the cgroup file
// systems mounted at root.
func quotaOf(listing io.Reader, root string) (float64, bool) {
	best, found := 0.0, false
	take := func(q float64, ok bool) {
		if ok && (!found || q < best) {
			best, found = q, true
		}
	}
	sc := bufio.NewScanner(listing)
	for sc.Scan() {
		// hierarchy-ID:controllers:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			take(walk(root, parts[2], readV2))
		case hasController(parts[1], "cpu"):
			for _, mount := range []string{"cpu", "cpu,cpuacct", "cpuacct,cpu"} {
				if _, err := os.Stat(filepath.Join(root, mount)); err == nil {
					take(walk(filepath.Join(root, mount), parts[2], readV1))
					break
				}
			}
		}
	}
	return best, found
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// walk reads the quota of every cgroup from path up to the mount's root
// and returns the tightest. Inside a container the path may name the
// host's hierarchy while the mount shows only the container's own: a
// directory that is missing is skipped.
func walk(mount, path string, read func(dir string) (float64, bool)) (float64, bool) {
	best, found := 0.0, false
	for p := filepath.Clean("/" + path); ; p = filepath.Dir(p) {
		if q, ok := read(filepath.Join(mount, p)); ok && (!found || q < best) {
			best, found = q, true
		}
		if p == "/" {
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
