package capture

import (
	"net/url"
	"regexp"
)

// RedactURL hides the password of a PostgreSQL connection string, in both its forms, for logs
// and error messages: the URL's user info and password= query parameter, or the password=
// keyword of the key=value form (quoted or not). It is the one redactor of pgoutbox: the
// command, the benchmark and the tests all use it.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "***")
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "***")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	// Not a URL we can parse: a key=value string, or a URL whose password breaks parsing.
	s = urlUserInfo.ReplaceAllString(s, "${1}***@")
	return keywordPassword.ReplaceAllString(s, "${1}***")
}

var (
	urlUserInfo     = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)
	keywordPassword = regexp.MustCompile(`(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)
)
