// Command hello is the program inside the runnable test image that
// internal/testenv seeds (<registry>/seed/hello:1). It prints one fixed line,
// testenv.HelloOutput, so that a test can tell the image ran.
//
// It is built with CGO_ENABLED=0 into a static binary; it imports only what
// keeps that binary small.
package main

import "os"

func main() {
	if _, err := os.Stdout.WriteString("hello from bundle\n"); err != nil {
		os.Exit(1)
	}
}
