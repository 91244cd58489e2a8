package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// usage is what help, -h and --help print.
const usage = `pullthrough: a pull-through cache for container registries.

Usage:
  pullthrough                      serve: a local server (PULLTHROUGH_ADDR), or
                                   under AWS Lambda the function URL
  pullthrough warm [-platform P,...] IMAGE...
                                   fill the configured store with images
  pullthrough sweep [--dry-run]    delete what was not used within PULLTHROUGH_RETENTION
  pullthrough doctor [flags] MIRROR-URL
                                   check a running mirror as its clients would
                                   (pullthrough doctor -h)
  pullthrough version              print the version
  pullthrough help                 print this

Configuration is environment variables only (PULLTHROUGH_*, and the AWS SDK's
own for S3). They are listed in README.md, section Configuration
(https://github.com/pullthrough/pullthrough#configuration). An unknown or
invalid variable stops the server at start.
`

// usageError is a command line the binary does not understand: exit
// status 2, never a server started by mistake.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// command splits the command line into the subcommand ("" serves) and its
// arguments. help and version are answered here.
func command(args []string) (cmd string, rest []string, err error) {
	if len(args) == 0 {
		return "", nil, nil
	}
	cmd, rest = args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			return "", nil, usageError{fmt.Sprintf("help takes no arguments, got %q", strings.Join(rest, " "))}
		}
		fmt.Print(usage)
		return "help", nil, nil
	case "version", "--version":
		if len(rest) > 0 {
			return "", nil, usageError{fmt.Sprintf("version takes no arguments, got %q", strings.Join(rest, " "))}
		}
		fmt.Println("pullthrough", version)
		return "version", nil, nil
	case "warm", "sweep", "doctor":
		return cmd, rest, nil
	}
	if strings.HasPrefix(cmd, "-") {
		return "", nil, usageError{fmt.Sprintf("unknown flag %q: the server takes no flags, only PULLTHROUGH_* variables", cmd)}
	}
	return "", nil, usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// exit prints err and gives the process's exit status: 0 for none (and
// for a subcommand's -h), 2 for a command line not understood, 1 for
// anything else. Errors span one line: a start-up failure is one log line.
func exit(err error, stderr io.Writer) int {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "pullthrough: %s\nRun 'pullthrough help' for usage.\n", ue.msg)
		return 2
	}
	fmt.Fprintln(stderr, "pullthrough:", strings.ReplaceAll(err.Error(), "\n", "; "))
	return 1
}

// flagError is a subcommand's flag.Parse error as a usage error; -h stays
// flag.ErrHelp (exit status 0, the FlagSet printed its usage).
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err.Error()}
}
