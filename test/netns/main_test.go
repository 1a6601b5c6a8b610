package netns

import (
	"os"
	"testing"

	"github.com/imds/imds/internal/testenv"
)

// imdsBin is the imds binary built from this module by TestMain.
var imdsBin string

func TestMain(m *testing.M) {
	Main(map[string]Func{"ttl-server": ttlServer, "sdk-get": sdkGet})
	os.Exit(testenv.RunWithImds(m, &imdsBin))
}
