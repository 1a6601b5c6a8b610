// Command imds is an EC2-compatible Instance Metadata Service.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/imds/imds/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
