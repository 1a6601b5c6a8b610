package config

import (
	"encoding/base64"
	"strings"
)

// UserDataBytes returns the user data exactly as the instance receives it, or nil
// when the instance has none.
func (in *Instance) UserDataBytes() []byte {
	if in.UserData != nil {
		return []byte(*in.UserData)
	}
	if in.UserDataBase64 != "" {
		b, err := decodeBase64(in.UserDataBase64)
		if err != nil {
			return nil
		}
		return b
	}
	return nil
}

// decodeBase64 accepts standard base64 with or without padding and with line
// breaks, as the EC2 API and base64(1) produce it.
func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.WithPadding(base64.NoPadding).DecodeString(strings.TrimRight(s, "="))
}
