package fleet

import (
	"bytes"

	"github.com/imds/imds/internal/metadata"
)

func metadataRequest() metadata.Request { return metadata.Request{V2: true} }

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
