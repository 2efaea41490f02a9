// Command seed pushes the test image set of internal/testenv to a registry
// and prints one reference per line (for scripts/demo.sh and scripts/bench.sh).
// It waits up to 15 s for the registry to answer first.
package main

import (
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/bundle-tool/bundle/internal/testenv"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: seed HOST:PORT")
		os.Exit(2)
	}
	host := os.Args[1]
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "seed: registry %s not ready: %v\n", host, err)
			os.Exit(1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, err := testenv.SeedAt(host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
	for _, im := range s.Images {
		fmt.Println(im.Ref)
	}
}
