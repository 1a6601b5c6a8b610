package dataplane

import (
	"bufio"
	"net/http"
	"strconv"
	"time"
)

// errorPage is EC2's XHTML error page for 400, 401 and 404.
func errorPage(code int) []byte {
	title := strconv.Itoa(code) + " - " + http.StatusText(code)
	return []byte(`<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
	"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>` + title + `</title>
 </head>
 <body>
  <h1>` + title + `</h1>
 </body>
</html>`)
}

// pages are the bodies EC2 answers errors with. A 403 has an empty body.
var pages = map[int][]byte{
	http.StatusBadRequest:   errorPage(http.StatusBadRequest),
	http.StatusUnauthorized: errorPage(http.StatusUnauthorized),
	http.StatusNotFound:     errorPage(http.StatusNotFound),
}

var pageLen = map[int][]string{}

func init() {
	for code, p := range pages {
		pageLen[code] = []string{strconv.Itoa(len(p))}
	}
}

// writeError answers code with EC2's body for it. It never includes internal
// error text.
func (h *Handler) writeError(w http.ResponseWriter, code int) int {
	if h.emptyErrors && code != http.StatusNotFound {
		return writeEmpty(w, code)
	}
	return writePage(w, code)
}

func writeEmpty(w http.ResponseWriter, code int) int {
	hd := w.Header()
	hd["Content-Type"] = valText
	hd["Content-Length"] = valZero
	w.WriteHeader(code)
	return code
}

func writePage(w http.ResponseWriter, code int) int {
	hd := w.Header()
	body := pages[code]
	if body == nil {
		hd["Content-Type"] = valText
		hd["Content-Length"] = valZero
	} else {
		hd["Content-Type"] = valHTML
		hd["Content-Length"] = pageLen[code]
	}
	w.WriteHeader(code)
	w.Write(body)
	return code
}

// redirect answers 301 with an empty body, as EC2 does for
// iam/security-credentials without its trailing slash.
func redirect(w http.ResponseWriter, r *http.Request, path string) int {
	hd := w.Header()
	host := r.Host
	if host == "" {
		host = "169.254.169.254"
	}
	hd["Location"] = []string{"http://" + host + path}
	hd["Content-Type"] = valText
	hd["Content-Length"] = valZero
	w.WriteHeader(http.StatusMovedPermanently)
	return http.StatusMovedPermanently
}

// notAllowed answers 405 with EC2's reason phrase, "Not Allowed", which
// net/http cannot write; the connection is taken over to write it.
func notAllowed(w http.ResponseWriter, allow string) int {
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.Header()["Allow"] = []string{allow}
		return writeEmpty(w, http.StatusMethodNotAllowed)
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return http.StatusMethodNotAllowed
	}
	defer c.Close()
	writeRaw(rw.Writer, "405 Not Allowed", allow)
	return http.StatusMethodNotAllowed
}

func writeRaw(bw *bufio.Writer, status, allow string) {
	bw.WriteString("HTTP/1.1 " + status + "\r\n")
	bw.WriteString("Allow: " + allow + "\r\n")
	bw.WriteString("Content-Length: 0\r\nContent-Type: text/plain\r\n")
	bw.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	bw.WriteString("Server: EC2ws\r\nConnection: close\r\n\r\n")
	bw.Flush()
}

// drop closes the connection without an answer: what a caller sees from an
// endpoint that is not there for it.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	writeEmpty(w, http.StatusForbidden)
}

// throttled answers a request over its instance's rate limit: the configured
// status with an empty body (what EC2 sends with it is not known), or no
// answer at all.
func (h *Handler) throttled(w http.ResponseWriter) int {
	if h.limitCode == 0 {
		drop(w)
		return 0
	}
	return writeEmpty(w, h.limitCode)
}
