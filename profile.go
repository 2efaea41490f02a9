package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles writes CPU and block profiles when BUNDLE_CPUPROFILE or
// BUNDLE_BLOCKPROFILE name files (a developer aid for scripts/bench.sh;
// see docs/decisions.md). It returns the function that stops them.
func startProfiles() func() {
	var stops []func()
	if p := os.Getenv("BUNDLE_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
		} else {
			fmt.Fprintf(os.Stderr, "bundle: warning: cannot write CPU profile %s\n", p)
		}
	}
	if p := os.Getenv("BUNDLE_BLOCKPROFILE"); p != "" {
		runtime.SetBlockProfileRate(10000)
		stops = append(stops, func() {
			if f, err := os.Create(p); err == nil {
				_ = pprof.Lookup("block").WriteTo(f, 0)
				f.Close()
			}
		})
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}
