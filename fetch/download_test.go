package fetch

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Blobs the cache holds finish as fast as they are added: with -race this
// proves a worker reads the pool's maps only under its lock.
func TestDownloaderCachedRace(t *testing.T) {
	cache, err := OpenCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var descs []v1.Descriptor
	for i := range 500 {
		data := []byte(fmt.Sprintf("blob %d", i))
		h, _, _ := v1.SHA256(bytes.NewReader(data))
		if err := cache.Put(h, data); err != nil {
			t.Fatal(err)
		}
		descs = append(descs, v1.Descriptor{Digest: h, Size: int64(len(data))})
	}
	repo, err := name.NewRepository("127.0.0.1:1/test/blob")
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{Access: Access{Keychain: authn.NewMultiKeychain()}, Cache: cache})
	ctx := context.Background()
	for range 40 { // the race is a narrow window: try it often
		d := NewDownloader(ctx, c, cache, 8)
		for _, desc := range descs {
			d.Add(repo, desc, "test", false)
		}
		d.Close()
		d.Wait()
		for _, desc := range descs {
			f, _, err := d.Open(ctx, desc.Digest)
			if err != nil {
				t.Fatalf("open %s: %v", desc.Digest, err)
			}
			f.Close()
		}
		if err := d.FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}
