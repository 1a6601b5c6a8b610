package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteText writes one line per check: the verdict, the check's id, the
// message and, for a problem, "Fix: " and the fix; then a summary line.
func (rep *Report) WriteText(w io.Writer) error {
	width := 0
	for _, c := range rep.Checks {
		width = max(width, len(c.ID))
	}
	count := map[Status]int{}
	var b strings.Builder
	for _, c := range rep.Checks {
		count[c.Status]++
		fmt.Fprintf(&b, "%-4s  %-*s  %s", strings.ToUpper(string(c.Status)), width, c.ID, c.Message)
		if c.Fix != "" {
			b.WriteString(". Fix: " + c.Fix)
		}
		b.WriteByte('\n')
	}
	warnings := "warnings"
	if count[Warn] == 1 {
		warnings = "warning"
	}
	fmt.Fprintf(&b, "%d passed, %d %s, %d failed, %d skipped\n", count[Pass], count[Warn], warnings, count[Fail], count[Skip])
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one indented JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
