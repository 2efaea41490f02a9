// Command digest prints the digest a registry serves for a reference
// (what `crane digest` does), for scripts/demo.sh.
package main

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: digest REF")
		os.Exit(2)
	}
	ref, err := name.ParseReference(os.Args[1])
	if err == nil {
		var d *remote.Descriptor
		if d, err = remote.Get(ref); err == nil {
			fmt.Println(d.Digest)
			return
		}
	}
	fmt.Fprintln(os.Stderr, "digest:", err)
	os.Exit(1)
}
