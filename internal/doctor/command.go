package doctor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Command is `pullthrough doctor [flags] MIRROR-URL`: it runs the checks,
// prints them to out and returns an error when one failed (so the process
// exits non-zero). Credentials come from --token / PULLTHROUGH_DOCTOR_TOKEN
// or --user / PULLTHROUGH_DOCTOR_USER (USER:PASS) and are never printed.
func Command(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: pullthrough doctor [--image NAME:TAG] [--ns REGISTRY]... [--token T | --user USER:PASS] [--json] MIRROR-URL")
		fs.PrintDefaults()
	}
	image := fs.String("image", DefaultImage, "image to check with: NAME:TAG goes to the default upstream; REGISTRY/NAME:TAG is asked with ?ns=REGISTRY")
	asJSON := fs.Bool("json", false, "print a JSON array of {check,status,detail,hint}")
	// Secrets are not flag defaults: usage would print them.
	token := fs.String("token", "", "bearer token for a mirror that refuses anonymous clients (default $PULLTHROUGH_DOCTOR_TOKEN)")
	user := fs.String("user", "", "USER:PASS basic credentials (default $PULLTHROUGH_DOCTOR_USER)")
	timeout := fs.Duration("timeout", DefaultTimeout, "timeout of each request")
	var namespaces repeated
	fs.Var(&namespaces, "ns", "registry whose ?ns= routing to check (repeatable; default: the one the mirror names for --image)")
	// Flags may follow the URL, as users type them.
	var rest []string
	for a := args; ; {
		if err := fs.Parse(a); errors.Is(err, flag.ErrHelp) {
			return nil
		} else if err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		a = fs.Args()[1:]
	}
	if len(rest) != 1 {
		fs.Usage()
		return fmt.Errorf("doctor: want exactly one mirror URL, got %d", len(rest))
	}
	if *token == "" {
		*token = getenv("PULLTHROUGH_DOCTOR_TOKEN")
	}
	if *user == "" {
		*user = getenv("PULLTHROUGH_DOCTOR_USER")
	}
	opts := Options{Mirror: rest[0], Image: *image, Namespaces: namespaces, Token: *token, Timeout: *timeout}
	if *user != "" {
		u, p, ok := strings.Cut(*user, ":")
		if !ok || u == "" {
			return fmt.Errorf("doctor: --user wants USER:PASS")
		}
		opts.Username, opts.Password = u, p
	}
	rs, err := Run(ctx, opts)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if err := Write(out, rs, *asJSON); err != nil {
		return err
	}
	if n := Failures(rs); n > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", n, len(rs))
	}
	return nil
}

type repeated []string

func (l *repeated) String() string { return strings.Join(*l, ",") }

func (l *repeated) Set(v string) error {
	*l = append(*l, v)
	return nil
}
