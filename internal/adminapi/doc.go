// Package adminapi is what the control plane's admin API and its client
// share: the JSON bodies of /v1/, the SigV4 signing of a request as the
// control plane verifies it, and the operator's shared-credentials file,
// read with the AWS SDK's own loader. The server (controlplane, server) and
// the client (adminclient, cli) import it; neither imports the other.
package adminapi
