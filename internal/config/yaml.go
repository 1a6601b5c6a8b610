package config

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeYAML decodes one YAML document into v, refusing keys v does not
// have. Its errors read the same wherever YAML comes in (the configuration
// file, admin bodies, scenario files, the CLI): the library's "yaml: "
// prefix is dropped and an unknown key is named as an unknown field, each with its line.
// An empty document returns io.EOF for the caller to word.
func DecodeYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	switch {
	case errors.As(err, &te):
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = unknownFieldRe.ReplaceAllString(m, `${1}unknown field "${2}"`)
		}
		return errors.New(strings.Join(msgs, "\n"))
	case err == nil, errors.Is(err, io.EOF):
		return err
	}
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

var unknownFieldRe = regexp.MustCompile(`^(line \d+: )field (\S+) not found in type \S+$`)
