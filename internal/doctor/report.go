package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Write prints results, one line per check ("PASS  check  detail" and, when
// there is something to do, "; do: hint"), or as a JSON array of
// {check,status,detail,hint} with asJSON.
func Write(w io.Writer, rs []Result, asJSON bool) error {
	if asJSON {
		if rs == nil {
			rs = []Result{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rs)
	}
	width := 0
	for _, r := range rs {
		width = max(width, len(r.Check))
	}
	for _, r := range rs {
		line := fmt.Sprintf("%-4s  %-*s  %s", r.Status, width, r.Check, r.Detail)
		if r.Hint != "" {
			line += "; do: " + r.Hint
		}
		if _, err := fmt.Fprintln(w, strings.ReplaceAll(line, "\n", " ")); err != nil {
			return err
		}
	}
	return nil
}
