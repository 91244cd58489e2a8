package proxy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pullthrough/pullthrough/internal/field"
	"github.com/pullthrough/pullthrough/internal/proxy"
)

// fieldsOf lists the Field of every field error in err, sorted.
func fieldsOf(t *testing.T, err error) []string {
	t.Helper()
	var out []string
	for _, e := range field.Flatten(err) {
		var fe *field.Error
		if !errors.As(e, &fe) {
			t.Errorf("got %v, want only *field.Error values", e)
			continue
		}
		out = append(out, fe.Field)
	}
	slices.Sort(out)
	return out
}

// Each rule of Config.Validate names its field; the defaults pass.
func TestTableConfigValidate(t *testing.T) {
	valid := proxy.Config{}.WithDefaults()
	for _, tc := range []struct {
		name   string
		change func(c *proxy.Config)
		want   []string // fields named, sorted; none for a valid config
	}{
		{"defaults", func(*proxy.Config) {}, nil},
		{"presign at the bounds", func(c *proxy.Config) { c.PresignTTL = time.Second }, nil},
		{"presign too short", func(c *proxy.Config) { c.PresignTTL = 999 * time.Millisecond }, []string{"PresignTTL"}},
		{"presign too long", func(c *proxy.Config) { c.PresignTTL = 7*24*time.Hour + time.Second }, []string{"PresignTTL"}},
		{"fill timeout too short", func(c *proxy.Config) { c.FillTimeout = time.Second / 2 }, []string{"FillTimeout"}},
		{"spool directory missing", func(c *proxy.Config) { c.SpoolDir = "/nonexistent-spool-dir/x" }, []string{"SpoolDir"}},
		{"spool directory is a file", func(c *proxy.Config) { c.SpoolDir = "config_test.go" }, []string{"SpoolDir"}},
		{"spool directory exists", func(c *proxy.Config) { c.SpoolDir = "." }, nil},
		{"no fill wait", func(c *proxy.Config) { c.FillWait = 0 }, []string{"FillWait"}},
		{"lease under the minimum", func(c *proxy.Config) { c.LeaseTTL = proxy.MinLeaseTTL - 1 }, []string{"LeaseTTL"}},
		{"lease at the minimum", func(c *proxy.Config) { c.LeaseTTL = proxy.MinLeaseTTL }, nil},
		{"unknown policy", func(c *proxy.Config) { c.LargeBlobPolicy = "later" }, []string{"LargeBlobPolicy"}},
		{"empty policy", func(c *proxy.Config) { c.LargeBlobPolicy = "" }, []string{"LargeBlobPolicy"}},
		{"no fill parts", func(c *proxy.Config) { c.FillParts = 0 }, []string{"FillParts"}},
		{"too many fill parts", func(c *proxy.Config) { c.FillParts = proxy.MaxFillParts + 1 }, []string{"FillParts"}},
		{"fill part too small", func(c *proxy.Config) { c.FillPartSize = proxy.MinFillPartSize - 1 }, []string{"FillPartSize"}},
		{"fill part too big", func(c *proxy.Config) { c.FillPartSize = proxy.MaxFillPartSize + 1 }, []string{"FillPartSize"}},
		{"no fills", func(c *proxy.Config) { c.MaxFills = 0 }, []string{"MaxFills"}},
		{"too many fills", func(c *proxy.Config) { c.MaxFills = proxy.MaxMaxFills + 1 }, []string{"MaxFills"}},
		{"empty client token", func(c *proxy.Config) { c.Access.Tokens = []string{"ok", " "} }, []string{"Access.Tokens"}},
		{"client user without password", func(c *proxy.Config) { c.Access.Users = map[string]string{"ci": ""} }, []string{"Access.Users"}},
		{"client user without name", func(c *proxy.Config) { c.Access.Users = map[string]string{"": "pw"} }, []string{"Access.Users"}},
		{"client user with a colon", func(c *proxy.Config) { c.Access.Users = map[string]string{"a:b": "pw"} }, []string{"Access.Users"}},
		{"bad CIDR", func(c *proxy.Config) { c.Access.CIDRs = []string{"10.0.0.0/8", "10.0.0.0/33"} }, []string{"Access.CIDRs"}},
		{"CIDRs and addresses", func(c *proxy.Config) { c.Access.CIDRs = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"} }, nil},
		{
			"every problem at once",
			func(c *proxy.Config) { c.PresignTTL, c.LeaseTTL, c.MaxFills = 0, 0, 0 },
			[]string{"LeaseTTL", "MaxFills", "PresignTTL"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid
			tc.change(&c)
			err := c.Validate()
			if got := fieldsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("got fields %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// Credentials never appear in a validation error.
func TestTableAccessValidateHidesSecrets(t *testing.T) {
	err := proxy.AccessConfig{Users: map[string]string{"": "hunter2"}, Tokens: []string{""}}.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("got %v, want an error without the password", err)
	}
}

// Each rule of UpstreamConfig.Validate names its field; credentials in a
// URL are refused with ErrURLCredentials and never echoed.
func TestTableUpstreamConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  proxy.UpstreamConfig
		want []string
	}{
		{"https base URL", proxy.UpstreamConfig{URL: "https://r.example"}, nil},
		{"http with port, trailing slash, host", proxy.UpstreamConfig{Host: "r.example:5000", URL: "http://127.0.0.1:5000/"}, nil},
		{"no scheme", proxy.UpstreamConfig{URL: "r.example"}, []string{"URL"}},
		{"other scheme", proxy.UpstreamConfig{URL: "ftp://r.example"}, []string{"URL"}},
		{"no host", proxy.UpstreamConfig{URL: "https://"}, []string{"URL"}},
		{"path", proxy.UpstreamConfig{URL: "https://r.example/v2"}, []string{"URL"}},
		{"query", proxy.UpstreamConfig{URL: "https://r.example?x=1"}, []string{"URL"}},
		{"credentials", proxy.UpstreamConfig{URL: "https://robot:hunter2@r.example"}, []string{"URL"}},
		{"port out of range", proxy.UpstreamConfig{URL: "http://r.example:99999"}, []string{"URL"}},
		{"port zero", proxy.UpstreamConfig{URL: "http://r.example:0"}, []string{"URL"}},
		{"empty port", proxy.UpstreamConfig{URL: "http://r.example:"}, nil},
		{"bad host", proxy.UpstreamConfig{Host: "r.example/org", URL: "https://r.example"}, []string{"Host"}},
		{"user without password", proxy.UpstreamConfig{URL: "https://r.example", Username: "u"}, []string{"Username"}},
		{"password without user", proxy.UpstreamConfig{URL: "https://r.example", Password: "hunter2"}, []string{"Username"}},
		{"both", proxy.UpstreamConfig{URL: "https://r.example", Username: "u", Password: "hunter2"}, nil},
		{"bad auth host", proxy.UpstreamConfig{URL: "https://r.example", AuthHosts: []string{"auth.example", "user@auth.example"}}, []string{"AuthHosts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if got := fieldsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("got fields %v (%v), want %v", got, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q echoes a password", err)
			}
			if _, nerr := proxy.NewUpstream(tc.cfg); (nerr == nil) != (tc.want == nil) {
				t.Errorf("NewUpstream: got %v, want an error exactly when Validate has one", nerr)
			}
		})
	}
	if err := (proxy.UpstreamConfig{URL: "https://u:p@r.example"}).Validate(); !errors.Is(err, proxy.ErrURLCredentials) {
		t.Errorf("got %v, want ErrURLCredentials", err)
	}
}

// A set of upstreams names each host once, and the default among them.
func TestTableValidateUpstreamHosts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		def   string
		hosts []string
		want  []string
	}{
		{"distinct, no default", "", []string{"docker.io", "ghcr.io"}, nil},
		{"default among them, any case", "GHCR.io", []string{"docker.io", "ghcr.io"}, nil},
		{"repeated", "", []string{"ghcr.io", "docker.io", "GHCR.IO"}, []string{"Upstreams[2].Host"}},
		{"unknown default", "quay.io", []string{"docker.io"}, []string{"DefaultUpstream"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := proxy.ValidateUpstreamHosts(tc.def, tc.hosts)
			if got := fieldsOf(t, err); !slices.Equal(got, tc.want) {
				t.Errorf("got fields %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}

// A sweep keeps what was used within at least MinRetention.
func TestTableSweepOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		retention time.Duration
		want      []string
	}{
		{proxy.MinRetention, nil},
		{30 * 24 * time.Hour, nil},
		{proxy.MinRetention - time.Second, []string{"Retention"}},
		{0, []string{"Retention"}},
	} {
		err := proxy.SweepOptions{Retention: tc.retention}.Validate()
		if got := fieldsOf(t, err); !slices.Equal(got, tc.want) {
			t.Errorf("retention %s: got fields %v (%v), want %v", tc.retention, got, err, tc.want)
		}
	}
}

// New applies the defaults, then the same rules: a zero Config is valid, a
// broken rule is New's error naming the field, and upstream sets are
// checked.
func TestTableNewValidates(t *testing.T) {
	up, err := proxy.NewUpstream(proxy.UpstreamConfig{Host: "r.example", URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     proxy.Config
		ups     []*proxy.Upstream
		wantErr string
	}{
		{"zero config", proxy.Config{}, []*proxy.Upstream{up}, ""},
		{"bad policy", proxy.Config{LargeBlobPolicy: "later"}, []*proxy.Upstream{up}, "LargeBlobPolicy"},
		{"bad CIDR", proxy.Config{Access: proxy.AccessConfig{CIDRs: []string{"x"}}}, []*proxy.Upstream{up}, "Access.CIDRs"},
		{"no upstream", proxy.Config{}, nil, "no upstream"},
		{"upstream twice", proxy.Config{}, []*proxy.Upstream{up, up}, "Upstreams[1].Host"},
		{"unknown default", proxy.Config{DefaultUpstream: "ghcr.io"}, []*proxy.Upstream{up}, "DefaultUpstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := proxy.New(tc.cfg, nil, tc.ups, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("got %v, want no error", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("got %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}
