package main

import (
	"runtime/debug"
	"strings"
)

// versionOverride, when set at build time with
// -ldflags "-X main.versionOverride=v1.2.3", is the version reported;
// otherwise the build's own record says it (see version).
var versionOverride string

// version returns what -version prints and /status reports: the module
// version `go build` embeds (a tag, or a pseudo-version made of the commit
// time and revision, with "+dirty" when the checkout had changes), else the
// VCS revision and commit time, never a bare "dev".
func version() string {
	info, _ := debug.ReadBuildInfo()
	return versionFrom(versionOverride, info)
}

func versionFrom(override string, info *debug.BuildInfo) string {
	if override != "" {
		return override
	}
	if info == nil {
		return "unknown (the binary carries no build information)"
	}
	vcs := map[string]string{}
	for _, s := range info.Settings {
		if k, ok := strings.CutPrefix(s.Key, "vcs."); ok {
			vcs[k] = s.Value
		}
	}
	rev := vcs["revision"]
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && vcs["modified"] == "true" {
		rev += "+dirty"
	}
	var details []string
	if rev != "" {
		details = append(details, "revision "+rev)
	}
	if t := vcs["time"]; t != "" {
		details = append(details, "committed "+t)
	}
	if info.GoVersion != "" {
		details = append(details, info.GoVersion)
	}
	v := info.Main.Version
	switch {
	case v != "" && v != "(devel)":
	case rev != "":
		v = rev
		details = details[1:]
	default:
		v = "(devel, no VCS revision: built outside a git checkout or with -buildvcs=false)"
	}
	if len(details) == 0 {
		return v
	}
	return v + " (" + strings.Join(details, ", ") + ")"
}
