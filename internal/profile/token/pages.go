package token

import (
	"bytes"
	"html/template"

	"github.com/gofiber/fiber/v2"
)

// The token profile's few HTML pages: the authorize error page (errors
// that must not be redirected, RFC 6749 §4.1.2.1), the logout
// confirmation and the signed-out page. No external assets, no script.
var pages = template.Must(template.New("").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}
button{font:inherit;padding:.5rem 1rem}</style></head><body><main>
<h1>{{.Title}}</h1>{{end}}
{{define "foot"}}</main></body></html>{{end}}

{{define "error"}}{{template "head" .}}
<p>{{.Message}}</p>
<p>Return to the application and try again. If the problem persists, contact the application's administrator.</p>
{{template "foot" .}}{{end}}

{{define "signed-out"}}{{template "head" .}}
<p>You are signed out. You can close this window.</p>
{{template "foot" .}}{{end}}

{{define "consent"}}{{template "head" .}}
<p>The application <strong>{{.Client}}</strong> asks for access to your account:</p>
<ul>{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<button type="submit" name="consent" value="approve">Allow</button>
<button type="submit" name="consent" value="deny">Deny</button>
</form>
{{template "foot" .}}{{end}}

{{define "device"}}{{template "head" .}}
{{if .Done}}<p>{{.Message}}</p>
{{else if .Confirm}}<p>The application <strong>{{.Client}}</strong> on the device showing <strong>{{.UserCode}}</strong> asks for access to your account:</p>
<ul>{{range .Scopes}}<li>{{.}}</li>{{end}}</ul>
<p>Allow it only if you started this on a device of yours.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="user_code" value="{{.UserCode}}"><input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
{{else}}{{if .Message}}<p role="alert">{{.Message}}</p>{{end}}
{{if .CSRF}}<form method="post" action="{{.Action}}">
<label for="user_code">Enter the code your device shows</label>
<input id="user_code" name="user_code" value="{{.UserCode}}" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="32" required>
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit">Continue</button>
</form>{{end}}
{{end}}{{template "foot" .}}{{end}}

{{define "confirm-logout"}}{{template "head" .}}
<p>Do you want to sign out?</p>
<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<input type="hidden" name="confirm" value="yes">
<button type="submit">Sign out</button>
</form>
{{template "foot" .}}{{end}}
`))

type hidden struct{ Name, Value string }

type pageData struct {
	Title   string
	Message string
	Action  string
	Hidden  []hidden
	Client  string   // consent
	Scopes  []string // consent: what each requested scope grants

	// The device verification page: the code typed or to confirm, the
	// form's token, and which step it shows.
	UserCode string
	CSRF     string
	Confirm  bool
	Done     bool
}

// sendPage renders a page with headers that keep it out of caches and
// frames and send no referrer (the URL may carry state or hints).
func sendPage(c *fiber.Ctx, status int, name string, d pageData) error {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, d); err != nil {
		return err
	}
	setPageHeaders(c)
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(buf.Bytes())
}

func setPageHeaders(c *fiber.Ctx) {
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderPragma, "no-cache")
	// No form-action: Chrome applies it to the redirects that follow a
	// POST (consent, logout confirmation), which go to the application.
	c.Set(fiber.HeaderContentSecurityPolicy, "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
}
