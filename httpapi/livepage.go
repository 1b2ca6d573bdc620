package httpapi

import (
	"embed"

	"github.com/gofiber/fiber/v2"
)

// livePageFiles contains the live events page. It is plain HTML, CSS and
// JavaScript, so it needs no build step.
//
//go:embed web/index.html web/app.js web/app.css
var livePageFiles embed.FS

// livePageCSP allows only the page's own script and style files, and
// connections back to the service. ws: and wss: are listed besides 'self'
// because browsers that implement only CSP Level 2 do not match WebSocket
// URLs against 'self'.
const livePageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"connect-src 'self' ws: wss:; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// registerLivePage serves the live events page at / with its script and
// style sheet. The routes need no token because the files contain no data:
// the page prompts for the token and sends it with every API request.
func registerLivePage(app *fiber.App) {
	app.Get("/", serveLivePageFile("web/index.html", fiber.MIMETextHTMLCharsetUTF8))
	app.Get("/app.js", serveLivePageFile("web/app.js", fiber.MIMEApplicationJavaScriptCharsetUTF8))
	app.Get("/app.css", serveLivePageFile("web/app.css", "text/css; charset=utf-8"))
}

func serveLivePageFile(name, contentType string) fiber.Handler {
	body, err := livePageFiles.ReadFile(name)
	if err != nil {
		// The embed directive above lists every name, so this is a build mistake.
		panic("httpapi: embedded live page file " + name + " is missing: " + err.Error())
	}
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, contentType)
		c.Set(fiber.HeaderContentSecurityPolicy, livePageCSP)
		c.Set(fiber.HeaderXFrameOptions, "DENY")
		c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.Send(body)
	}
}
