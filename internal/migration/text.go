package migration

import (
	"fmt"
	"strings"
)

// Text is what an enforce did, or would do, in the words `imds migration
// enforce` and the web page both use: a line per instance changed or
// already required, then each refusal with the callers that would break.
func (r EnforceResult) Text() string {
	var b strings.Builder
	verb := "required tokens on"
	if r.DryRun {
		verb = "would require tokens on"
	}
	for _, id := range r.Enforced {
		fmt.Fprintf(&b, "%s %s\n", verb, id)
	}
	for _, id := range r.AlreadyRequired {
		fmt.Fprintf(&b, "%s already requires tokens\n", id)
	}
	if len(r.Enforced)+len(r.AlreadyRequired)+len(r.Refused) == 0 {
		b.WriteString("no instance to change: none is ready and still optional\n")
	}
	if len(r.Refused) > 0 {
		fmt.Fprintf(&b, "%s\n", r.RefusedText())
	}
	return b.String()
}

// RefusedText is the refusals: how many instances would break, then each
// with its verdict and its breaking callers, one a line. It is empty when
// nothing was refused.
func (r EnforceResult) RefusedText() string {
	if len(r.Refused) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s would break:", len(r.Refused), plural(uint64(len(r.Refused)), "instance", "instances"))
	for _, rf := range r.Refused {
		fmt.Fprintf(&b, "\nrefused %s: %s", rf.InstanceID, rf.Verdict)
		for _, c := range rf.Callers {
			fmt.Fprintf(&b, "\n  %s %s %q: %s", c.Class, c.Address, c.UserAgent, c.Evidence)
		}
	}
	return b.String()
}
