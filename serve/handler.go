package serve

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bundle-tool/bundle/tarball"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// chunkSize is how much of a blob is read (and checked) before it is
// written: the unit of the change check, and the memory per download.
const chunkSize = 256 << 10

var chunks = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// Handler returns the registry's http.Handler: the pull side of the OCI
// distribution API, read only.
func (r *Registry) Handler() http.Handler { return http.HandlerFunc(r.serveHTTP) }

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	lw := &logWriter{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	if r.opts.AccessLog != nil {
		defer func() {
			r.opts.AccessLog(Access{Time: start, Remote: req.RemoteAddr, Method: req.Method, Path: logPath(req.URL.RequestURI()),
				Status: lw.status, Bytes: lw.n, Duration: time.Since(start), Seconds: time.Since(start).Seconds(), Error: lw.err})
		}()
	}
	w = lw
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	route, rerr := ParseRoute(req.URL.EscapedPath())
	if rerr != nil {
		writeError(w, req, rerr)
		return
	}
	if route.Kind == KindUpload {
		writeError(w, req, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "this registry is read only: push and mount are not supported"))
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, req, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "this registry is read only: %s is not supported", truncate(req.Method)))
		return
	}
	q := req.URL.Query()
	switch route.Kind {
	case KindBase:
		writeJSON(w, req, "application/json", struct{}{})
	case KindCatalog:
		r.catalog(w, req, q)
	case KindTags:
		r.tags(w, req, route, q)
	case KindManifest:
		r.manifest(w, req, route, q.Get("ns"))
	case KindBlob:
		r.blob(w, req, route, q.Get("ns"))
	case KindReferrers:
		r.referrers(w, req, route, q)
	}
}

// page reads n and last of a listing.
func page(q url.Values) (n int, last string, e *Error) {
	n = MaxPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		switch {
		case err == nil && v >= 0:
			n = min(v, MaxPage)
		case errors.Is(err, strconv.ErrRange) && s[0] != '-':
			n = MaxPage // a huge n: the most one page holds
		default:
			return 0, "", errorf(http.StatusBadRequest, CodeUnsupported, "n must be a number of at least 0, got %q", truncate(s))
		}
	}
	last = q.Get("last")
	if len(last) > MaxNameLength {
		return 0, "", errorf(http.StatusBadRequest, CodeUnsupported, "last is longer than %d characters", MaxNameLength)
	}
	return n, last, nil
}

// slice returns the page of sorted items after last, at most n, and
// whether more follow.
func slice(items []string, n int, last string) ([]string, bool) {
	start := 0
	if last != "" {
		start = sort.SearchStrings(items, last)
		if start < len(items) && items[start] == last {
			start++
		}
	}
	end := min(start+n, len(items))
	out := append([]string{}, items[start:end]...)
	return out, end < len(items) && n > 0
}

func link(w http.ResponseWriter, path string, n int, last string, extra url.Values) {
	v := url.Values{}
	for k, vs := range extra {
		v[k] = vs
	}
	v.Set("n", strconv.Itoa(n))
	v.Set("last", last)
	w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", path, v.Encode()))
}

func (r *Registry) catalog(w http.ResponseWriter, req *http.Request, q url.Values) {
	n, last, e := page(q)
	if e != nil {
		writeError(w, req, e)
		return
	}
	repos, more := slice(r.names, n, last)
	if more {
		link(w, "/v2/_catalog", n, repos[len(repos)-1], nil)
	}
	writeJSON(w, req, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
}

func nameUnknown(n string) *Error {
	return errorf(http.StatusNotFound, CodeNameUnknown, "repository %s is not served here", n)
}

func (r *Registry) tags(w http.ResponseWriter, req *http.Request, route Route, q url.Values) {
	rp := r.lookup(q.Get("ns"), route.Name)
	if rp == nil {
		writeError(w, req, nameUnknown(route.Name))
		return
	}
	n, last, e := page(q)
	if e != nil {
		writeError(w, req, e)
		return
	}
	tags, more := slice(rp.tagList, n, last)
	if more {
		var extra url.Values
		if ns := q.Get("ns"); ns != "" && normalizeNS(ns) != "" {
			extra = url.Values{"ns": {ns}}
		}
		link(w, "/v2/"+route.Name+"/tags/list", n, tags[len(tags)-1], extra)
	}
	writeJSON(w, req, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{route.Name, tags})
}

func (r *Registry) referrers(w http.ResponseWriter, req *http.Request, route Route, q url.Values) {
	if r.lookup(q.Get("ns"), route.Name) == nil {
		writeError(w, req, nameUnknown(route.Name))
		return
	}
	// No bundle carries referrers yet: the answer is the empty index the
	// spec gives for a subject with none (filtered or not).
	if q.Has("artifactType") {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, req, string(types.OCIImageIndex), v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
}

func (r *Registry) manifest(w http.ResponseWriter, req *http.Request, route Route, ns string) {
	rp := r.lookup(ns, route.Name)
	if rp == nil {
		writeError(w, req, nameUnknown(route.Name))
		return
	}
	d, mt := route.Digest, types.MediaType("")
	if route.Tag != "" {
		t, ok := rp.tags[route.Tag]
		if !ok {
			writeError(w, req, errorf(http.StatusNotFound, CodeManifestUnknown, "%s has no tag %s", route.Name, route.Tag))
			return
		}
		d, mt = t.digest, t.mt
	} else if !route.Supported || !rp.manifests[d] {
		writeError(w, req, errorf(http.StatusNotFound, CodeManifestUnknown, "%s has no manifest %s", route.Name, truncate(d.String())))
		return
	}
	at := r.blobs[d]
	if at.size > tarball.MaxManifestSize {
		r.fail(w, req, fmt.Errorf("manifest %s: %d bytes, over the limit of %d", d, at.size, tarball.MaxManifestSize))
		return
	}
	if mt == "" {
		mt = r.types[d]
	}
	data := make([]byte, at.size)
	if err := at.src.readAt(data, at.off); err != nil {
		r.fail(w, req, err)
		return
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.Hex {
		at.src.mu.Lock()
		if at.src.changed == nil {
			at.src.changed = &ChangedError{Bundle: at.src.name, File: at.src.name, What: fmt.Sprintf("%s no longer hashes to its digest", tarball.BlobPath(d))}
		}
		err := at.src.changed
		at.src.mu.Unlock()
		r.fail(w, req, err)
		return
	}
	if mt == "" {
		mt = sniffMediaType(data)
	}
	h := w.Header()
	h.Set("Content-Type", string(mt))
	h.Set("Content-Length", strconv.Itoa(len(data)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

// logPath bounds what the access log quotes of a request URI (the
// server's header limit bounds it already; this keeps a line readable).
func logPath(s string) string {
	if len(s) > 2*MaxPathLength {
		return s[:2*MaxPathLength] + "…"
	}
	return s
}

// sniffMediaType reads a manifest's own mediaType field.
func sniffMediaType(data []byte) types.MediaType {
	var m struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if json.Unmarshal(data, &m) == nil && m.MediaType != "" {
		return m.MediaType
	}
	return types.OCIManifestSchema1
}

func (r *Registry) blob(w http.ResponseWriter, req *http.Request, route Route, ns string) {
	rp := r.lookup(ns, route.Name)
	if rp == nil {
		writeError(w, req, nameUnknown(route.Name))
		return
	}
	d := route.Digest
	if !route.Supported || !rp.blobs[d] {
		writeError(w, req, errorf(http.StatusNotFound, CodeBlobUnknown, "%s has no blob %s", route.Name, truncate(d.String())))
		return
	}
	at := r.blobs[d]
	if err := at.src.check(); err != nil {
		r.fail(w, req, err)
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	off, n, status := int64(0), at.size, http.StatusOK
	if rg := req.Header.Get("Range"); rg != "" {
		start, length, ok, satisfiable := parseRange(rg, at.size)
		switch {
		case !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", at.size))
			writeError(w, req, errorf(http.StatusRequestedRangeNotSatisfiable, CodeBlobUnknown, "range %q is not within the blob's %d bytes", truncate(rg), at.size))
			return
		case ok:
			off, n, status = start, length, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, at.size))
		}
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if req.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	bp := chunks.Get().(*[]byte)
	defer chunks.Put(bp)
	buf := *bp
	for n > 0 {
		p := buf[:min(int64(len(buf)), n)]
		if err := at.src.readAt(p, at.off+off); err != nil {
			r.warn(err)
			lw := w.(*logWriter)
			lw.err = err.Error()
			// The headers are out: cut the connection, so that the client
			// sees a short body, never bytes that were not verified.
			panic(http.ErrAbortHandler)
		}
		if r.stall > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(r.stall))
		}
		if _, err := w.Write(p); err != nil {
			return // the client went away
		}
		off += int64(len(p))
		n -= int64(len(p))
	}
}

// parseRange reads a Range header of one byte range, as http.ServeContent
// does: ok with the range to send; satisfiable false for a range past the
// end (416); ok false and satisfiable true for what is ignored (several
// ranges, another unit: the whole blob is sent).
func parseRange(s string, size int64) (start, length int64, ok, satisfiable bool) {
	spec, found := strings.CutPrefix(s, "bytes=")
	if !found {
		return 0, 0, false, true
	}
	if strings.Contains(spec, ",") {
		return 0, 0, false, true
	}
	spec = strings.TrimSpace(spec)
	first, second, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false, false
	}
	first, second = strings.TrimSpace(first), strings.TrimSpace(second)
	if first == "" {
		// The last N bytes.
		n, err := strconv.ParseInt(second, 10, 64)
		if err != nil || n <= 0 || second[0] == '+' {
			return 0, 0, false, false
		}
		n = min(n, size)
		if n == 0 {
			return 0, 0, false, false
		}
		return size - n, n, true, true
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 || first[0] == '+' {
		return 0, 0, false, false
	}
	if a >= size {
		return 0, 0, false, false
	}
	end := size - 1
	if second != "" {
		b, err := strconv.ParseInt(second, 10, 64)
		if err != nil || b < a || second[0] == '+' {
			return 0, 0, false, false
		}
		end = min(b, size-1)
	}
	return a, end - a + 1, true, true
}

// fail answers 500 for an error of the server's own (a bundle file that
// changed, a read that failed), and reports it.
func (r *Registry) fail(w http.ResponseWriter, req *http.Request, err error) {
	r.warn(err)
	writeError(w, req, errorf(http.StatusInternalServerError, CodeUnknown, "%v", err))
}

// warn reports err once per bundle for a changed file, every time for
// other errors.
func (r *Registry) warn(err error) {
	if r.opts.Warn == nil {
		return
	}
	var ch *ChangedError
	if errors.As(err, &ch) {
		r.warned.Lock()
		defer r.warned.Unlock()
		if r.warnedFor == nil {
			r.warnedFor = map[string]bool{}
		}
		if r.warnedFor[ch.Bundle] {
			return
		}
		r.warnedFor[ch.Bundle] = true
	}
	r.opts.Warn(err)
}

func writeJSON(w http.ResponseWriter, req *http.Request, contentType string, v any) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if req.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// logWriter notes the status and size of an answer for the access log.
type logWriter struct {
	http.ResponseWriter
	status      int
	n           int64
	err         string
	wroteHeader bool
}

func (l *logWriter) WriteHeader(code int) {
	if !l.wroteHeader {
		l.status, l.wroteHeader = code, true
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.wroteHeader = true
	n, err := l.ResponseWriter.Write(p)
	l.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }
