package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/imds/imds/internal/adminapi"
	"github.com/imds/imds/internal/adminclient"
	"github.com/imds/imds/internal/testenv"
)

// TestMigrationPage drives the web page in headless Chromium against the
// built binary: curl-like IMDSv1 traffic makes the first instance not ready,
// the Go SDK with IMDSv2 keeps the second ready; the page shows the
// callers, filters, updates itself, refuses to enforce on the first
// instance naming its callers and enforces on the second. The admin API
// checks what changed. UPDATE_SCREENSHOT=1 writes the fleet page to
// docs/images/migration-ui.png.
func TestMigrationPage(t *testing.T) {
	chromium := testenv.Command(t, "chromium")
	dataDir := filepath.Join(t.TempDir(), "data")
	s := startServer(t, twoInstanceConfig, "--data-dir", dataDir)
	adminURL := s.adminURL(t)
	creds, err := adminapi.ReadCredentialsFile(filepath.Join(dataDir, "credentials"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := adminclient.New(adminclient.Options{URL: adminURL, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	httpTokens := func(id string) string {
		t.Helper()
		in, err := admin.MigrationInstance(t.Context(), id)
		if err != nil {
			t.Fatalf("admin API: %v", err)
		}
		return in.HTTPTokens
	}

	// IMDSv1 from the first instance, as curl does it; IMDSv2 with the Go
	// SDK from both.
	v1 := func(from, userAgent string) {
		t.Helper()
		c := newRecorder(from)
		c.header = http.Header{"User-Agent": {userAgent}}
		req, err := http.NewRequestWithContext(t.Context(), "GET", s.URL+"/latest/meta-data/instance-id", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("IMDSv1 GET from %s: status %d, want 200", from, resp.StatusCode)
		}
	}
	sdk := func(from string) {
		t.Helper()
		c := imds.New(imds.Options{
			Endpoint:          s.URL,
			HTTPClient:        newRecorder(from),
			ClientEnableState: imds.ClientEnabled,
			EnableFallback:    aws.FalseTernary,
		})
		if _, err := c.GetMetadata(t.Context(), &imds.GetMetadataInput{Path: "instance-id"}); err != nil {
			t.Fatalf("Go SDK from %s: %v", from, err)
		}
	}
	v1("127.0.0.1", "curl/8.5.0")
	sdk("127.0.0.1")
	sdk(dbAddress)

	// The login URL is the first line of `imds ui`.
	out, stderr, err := runCmd(t.Context(), os.Environ(), imdsBin, "ui", "--admin-url", adminURL, "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("imds ui: %v\n%s", err, stderr)
	}
	loginURL, _, _ := strings.Cut(out, "\n")
	if !strings.HasPrefix(loginURL, adminURL+"/ui/login?token=") {
		t.Fatalf("imds ui printed %q first, want the login URL %s/ui/login?token=...", loginURL, adminURL)
	}

	ctx := newBrowser(t, chromium)
	fleetRow := func(id string) string { return `#fleet tbody tr[data-instance="` + id + `"]` }
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	rows := func() int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#fleet tbody tr").length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Log in: the fleet shows both instances and the curl caller.
	do("log in and see the fleet",
		chromedp.Navigate(loginURL),
		chromedp.WaitVisible(chromedp.CSS(fleetRow(webInstanceID))),
		chromedp.WaitVisible(chromedp.CSS(fleetRow(dbInstanceID))),
	)
	if loc, _ := chromedp.Run(ctx, chromedp.Location()); loc != adminURL+"/ui/" {
		t.Errorf("after login the browser is at %s, want %s/ui/", loc, adminURL)
	}
	web := text(fleetRow(webInstanceID))
	for _, want := range []string{"not ready", "curl 8.5.0", "v1", "127.0.0.1"} {
		if !strings.Contains(web, want) {
			t.Errorf("fleet row of %s = %q, want it to show %q", webInstanceID, web, want)
		}
	}
	if db := text(fleetRow(dbInstanceID)); !strings.Contains(db, "ready") || strings.Contains(db, "not ready") {
		t.Errorf("fleet row of %s = %q, want ready", dbInstanceID, db)
	}

	// Sorting: a click on the Instance heading reverses the order.
	do("sort by instance, descending",
		chromedp.Click(chromedp.CSS(`#fleet th[data-key="id"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#fleet tbody tr").dataset.instance === "`+dbInstanceID+`"`),
		chromedp.Click(chromedp.CSS(`#fleet th[data-key="id"]`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#fleet tbody tr").dataset.instance === "`+webInstanceID+`"`),
	)

	// The filter box and the readiness select.
	do("filter on curl",
		chromedp.SendKeys(chromedp.ID("filter"), "curl"),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#fleet tbody tr").length === 1`),
	)
	if n := rows(); n != 1 || !strings.Contains(text("#fleet tbody tr"), webInstanceID) {
		t.Errorf("filter curl: %d rows, want the one of %s", n, webInstanceID)
	}
	do("clear the filter",
		chromedp.SendKeys(chromedp.ID("filter"), strings.Repeat(kb.Backspace, 4)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#fleet tbody tr").length === 2`),
		chromedp.SetValue(chromedp.ID("show"), "ready"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#fleet tbody tr").length === 1`),
	)
	if got := text("#fleet tbody tr"); !strings.Contains(got, dbInstanceID) {
		t.Errorf("show ready: the row is %q, want %s", got, dbInstanceID)
	}
	do("show all again",
		chromedp.SetValue(chromedp.ID("show"), "all"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("show").dispatchEvent(new Event("change"))`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#fleet tbody tr").length === 2`),
	)

	// New traffic appears without a reload: the marker set in this page
	// must still be there when the new caller shows.
	do("mark the page", chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`))
	v1("127.0.0.1", "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux#6.1.0 lang/python#3.11.2 Botocore/1.34.0")
	do("see the new caller",
		chromedp.Poll[chromedp.Void](`document.querySelector('`+fleetRow(webInstanceID)+`').textContent.includes("botocore")`),
	)
	if still, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)); err != nil || !still {
		t.Errorf("the page was reloaded to show new traffic (%v)", err)
	}

	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		root, err := testenv.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(root, "docs", "images", "migration-ui.png")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	// Enforce on the instance that is not ready: refused, naming the callers.
	do("open the instance page and press Enforce",
		chromedp.Click(chromedp.CSS(fleetRow(webInstanceID)+" a")),
		chromedp.WaitVisible(chromedp.CSS(`#callers tbody tr`)),
		chromedp.WaitVisible(chromedp.ID("enforce")),
		chromedp.Click(chromedp.ID("enforce")),
		chromedp.WaitVisible(chromedp.CSS("#result.refused")),
	)
	refusal := text("#result")
	for _, want := range []string{"refused " + webInstanceID, `"curl/8.5.0"`, "Botocore/1.34.0", "legacy code"} {
		if !strings.Contains(refusal, want) {
			t.Errorf("refusal %q does not name %q", refusal, want)
		}
	}
	if callers := text("#callers tbody"); !strings.Contains(callers, "aws-sdk-go-v2") || !strings.Contains(callers, "every request carried a token") {
		t.Errorf("instance page callers %q: want the Go SDK caller and its evidence", callers)
	}
	if got := httpTokens(webInstanceID); got != "optional" {
		t.Errorf("after the refused enforce, %s http-tokens = %q, want optional", webInstanceID, got)
	}

	// The login URL worked once.
	do("reuse the login URL", chromedp.Navigate(loginURL))
	if got := text("main"); !strings.Contains(got, "already used") || !strings.Contains(got, "imds ui") {
		t.Errorf("the login URL a second time shows %q, want that it was used and to run imds ui", got)
	}

	// Enforce on the ready instance, from its fleet row.
	do("enforce on the ready instance",
		chromedp.Navigate(adminURL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(fleetRow(dbInstanceID)+" button.enforce")),
		chromedp.Click(chromedp.CSS(fleetRow(dbInstanceID)+" button.enforce")),
		chromedp.WaitVisible(chromedp.CSS("#result.ok")),
		chromedp.Poll[chromedp.Void](`!document.querySelector('`+fleetRow(dbInstanceID)+` button.enforce') && document.querySelector('`+fleetRow(dbInstanceID)+`').textContent.includes("required")`),
	)
	if got := text("#result"); !strings.Contains(got, "required tokens on "+dbInstanceID) {
		t.Errorf("enforce answer %q, want %q", got, "required tokens on "+dbInstanceID)
	}
	if got := httpTokens(dbInstanceID); got != "required" {
		t.Errorf("after enforce, %s http-tokens = %q, want required", dbInstanceID, got)
	}
	if got := httpTokens(webInstanceID); got != "optional" {
		t.Errorf("after enforcing the other one, %s http-tokens = %q, want optional", webInstanceID, got)
	}
}

// newBrowser starts headless Chromium with a profile of the test's own and
// returns a tab's context, with a deadline for the whole test.
func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return tab
}
