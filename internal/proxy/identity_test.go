package proxy_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/pullthrough/pullthrough/internal/cache"
	"github.com/pullthrough/pullthrough/internal/proxy"
	"github.com/pullthrough/pullthrough/internal/store"
	"github.com/pullthrough/pullthrough/internal/testenv"
)

// forgeSchema1 wraps payload (any JSON object's bytes) in a libtrust
// "pretty signature" block, so that the body's schema 1 payload digest
// (the first formatLength bytes plus formatTail) is the hash of payload
// itself. No key is needed: libtrust signatures are self-signed, and the
// mirror, like the registries it imitates, does not check them.
func forgeSchema1(t *testing.T, payload []byte) []byte {
	t.Helper()
	end := bytes.LastIndexByte(payload, '}')
	if end < 0 {
		t.Fatal("payload is not a JSON object")
	}
	protected, _ := json.Marshal(map[string]any{
		"formatLength": end,
		"formatTail":   base64.RawURLEncoding.EncodeToString(payload[end:]),
		"time":         "2015-06-01T00:00:00Z",
	})
	sig := `,"signatures":[{"header":{"alg":"ES256"},"signature":"AAAA","protected":"` +
		base64.RawURLEncoding.EncodeToString(protected) + `"}]}`
	return append(bytes.Clone(payload[:end]), sig...)
}

// TestSchema1ForgeryStaysWithItsUpstream: upstream "b.example" is hostile
// (it models a compromised or malicious registry in a multi-upstream
// mirror): it answers a schema 1 manifest crafted so that its payload
// digest is the digest of an image of upstream "a.example", whose
// repository's clients pull it by digest. Whatever the order of the pulls,
// A's clients get A's exact bytes, never B's, also from a second mirror
// instance over the same store; and B's clients still get B's schema 1
// manifest under the digest B claims (schema 1 keeps working for its own
// upstream), or, when A's image is cached already, the bytes that hash to
// that digest.
func TestSchema1ForgeryStaysWithItsUpstream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bFirst  bool // B's forgery is pulled before A's image
		byTag   bool // B's clients pull the forgery by tag (else by digest)
		restart bool // A's second pull is from another instance on the same store
	}{
		{"forgery first, by digest", true, false, false},
		{"forgery first, by tag", true, true, false},
		{"image first, forgery after", false, false, false},
		{"image first, forgery by tag after", false, true, false},
		{"forgery first, other instance", true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			aReg := testenv.InProcessRegistry(t)
			a := testenv.NewUpstream(t, aReg)
			b := testenv.QuayLike(t)
			img := testenv.SeedImage(t, aReg, "org/app:1", 4<<10, 2)
			want, _ := img.RawManifest()
			d, _ := img.Digest()
			forged := forgeSchema1(t, want)
			b.Schema1.Set("evil/app", "x", forged, d)

			cfgs := []proxy.UpstreamConfig{
				{Host: "a.example", URL: a.URL.String()},
				{Host: "b.example", URL: b.Front.URL.String(), AuthHosts: b.AuthHosts()},
			}
			dir := t.TempDir()
			_, mirror := identityMirror(t, dir, nil, cfgs)

			pullA := func(base string) {
				t.Helper()
				resp := do(t, http.MethodGet, base+"/v2/org/app/manifests/"+d.String(), http.Header{"Accept": {acceptFull}})
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("A's client: got %d %s, want 200", resp.StatusCode, resp.body)
				}
				if !bytes.Equal(resp.body, want) {
					t.Errorf("A's client got %d bytes of type %s, want A's own %d-byte manifest (B's forgery is %d bytes)",
						len(resp.body), resp.Header.Get("Content-Type"), len(want), len(forged))
				}
			}
			pullB := func() {
				t.Helper()
				ref := d.String()
				if tc.byTag {
					ref = "x"
				}
				resp := do(t, http.MethodGet, mirror+"/v2/b.example/evil/app/manifests/"+ref, nil)
				// Bytes that hash exactly to the digest are the content
				// it names, whoever served them first: those are a right
				// answer too.
				if resp.StatusCode != http.StatusOK || !bytes.Equal(resp.body, forged) && digest.FromBytes(resp.body).String() != d.String() {
					t.Errorf("B's client: got %d and %d bytes, want 200 and B's own schema 1 body or bytes hashing to %s", resp.StatusCode, len(resp.body), d)
				}
				if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
					t.Errorf("B's client: got digest %s, want %s", got, d)
				}
			}
			if tc.bFirst {
				pullB()
				pullA(mirror)
			} else {
				pullA(mirror)
				pullB()
			}
			pullA(mirror)
			if tc.restart {
				_, other := identityMirror(t, dir, nil, cfgs)
				pullA(other)
			}
			// No key A's clients read holds B's bytes.
			st, _ := store.NewFilesystem(dir)
			for _, key := range []string{cache.ManifestKey(digest.Digest(d.String())), cache.UpstreamManifestKey("a.example", digest.Digest(d.String()))} {
				rc, _, err := st.Get(context.Background(), key)
				if err != nil {
					continue
				}
				var rec cache.Manifest
				err = json.NewDecoder(rc).Decode(&rec)
				rc.Close()
				if err != nil || !bytes.Equal(rec.Data, want) {
					t.Errorf("%s: got %d bytes (%v), want A's manifest or nothing", key, len(rec.Data), err)
				}
			}
		})
	}
}

// identityMirror serves a mirror of cfgs over a filesystem store in dir,
// on clock if it is set.
func identityMirror(t *testing.T, dir string, clock *testClock, cfgs []proxy.UpstreamConfig) (*proxy.Proxy, string) {
	t.Helper()
	st, err := store.NewFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newProxyOn(t, st, proxy.Config{ManifestTTL: time.Hour}, cfgs...)
	if clock != nil {
		p.SetClock(clock.now)
	}
	return p, serveProxy(t, p)
}

func serveProxy(t *testing.T, p *proxy.Proxy) string {
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestSweepJudgesUpstreamScopedManifests: a schema 1 manifest is kept
// under its upstream's own key (cache.UpstreamManifestKey), and the sweep
// reads those records like shared ones: kept while used, deleted when
// unused past the retention, with its tag.
func TestSweepJudgesUpstreamScopedManifests(t *testing.T) {
	quay := testenv.QuayLike(t)
	signed, d := testenv.Schema1Image(t, quay.Reg, "legacy/app", "old", 1, 1)
	quay.Schema1.Set("legacy/app", "old", signed, d)
	dir := t.TempDir()
	t0 := time.Now()
	clock := &testClock{t: t0}
	p, mirror := identityMirror(t, dir, clock, []proxy.UpstreamConfig{{Host: "quay.example", URL: quay.Front.URL.String(), AuthHosts: quay.AuthHosts()}})
	if r := do(t, http.MethodGet, mirror+"/v2/legacy/app/manifests/old", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("pull: got %d, want 200", r.StatusCode)
	}
	st, _ := store.NewFilesystem(dir)
	scoped := "manifests/_upstream/quay.example/" + d.Algorithm + "/" + d.Hex
	for _, tc := range []struct {
		name string
		at   time.Duration
		kept bool
	}{
		{"used a day ago", 24 * time.Hour, true},
		{"unused for 40 days", 40 * 24 * time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.set(t0.Add(tc.at))
			if _, err := p.Sweep(context.Background(), proxy.SweepOptions{Retention: 30 * 24 * time.Hour}); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{scoped, "tags/quay.example/legacy/app/_tag/old"} {
				if got := present(t, st, key); got != tc.kept {
					t.Errorf("%s present: got %v, want %v", key, got, tc.kept)
				}
			}
			if present(t, st, manifestKeyOf(t, d)) {
				t.Errorf("a schema 1 manifest is in the shared layout at %s", manifestKeyOf(t, d))
			}
		})
	}
}
