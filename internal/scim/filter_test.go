package scim

import (
	"errors"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`userName eq "bjensen"`, `userName eq "bjensen"`},
		{`USERNAME EQ "bjensen"`, `USERNAME eq "bjensen"`},
		{`name.familyName co "O'Malley"`, `name.familyName co "O'Malley"`},
		{`userName sw "J"`, `userName sw "J"`},
		{`title pr`, `title pr`},
		{`title PR`, `title pr`},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, `meta.lastModified gt "2011-05-13T04:42:34Z"`},
		{`meta.lastModified ge "2011-05-13T04:42:34Z"`, `meta.lastModified ge "2011-05-13T04:42:34Z"`},
		{`meta.lastModified lt "2011-05-13T04:42:34Z"`, `meta.lastModified lt "2011-05-13T04:42:34Z"`},
		{`meta.lastModified le "2011-05-13T04:42:34Z"`, `meta.lastModified le "2011-05-13T04:42:34Z"`},
		{`userName ew "sen"`, `userName ew "sen"`},
		{`userName ne "x"`, `userName ne "x"`},
		{`active eq true`, `active eq true`},
		{`active eq false`, `active eq false`},
		{`nickName eq null`, `nickName eq null`},
		{`x eq 42`, `x eq 42`},
		{`x gt -1.5e2`, `x gt -150`},
		{`title pr and userType eq "Employee"`, `(title pr and userType eq "Employee")`},
		{`title pr or userType eq "Intern"`, `(title pr or userType eq "Intern")`},
		// "and" binds tighter than "or"; both associate to the left.
		{`a pr or b pr and c pr`, `(a pr or (b pr and c pr))`},
		{`a pr and b pr or c pr`, `((a pr and b pr) or c pr)`},
		{`a pr or b pr or c pr`, `((a pr or b pr) or c pr)`},
		{`(a pr or b pr) and c pr`, `((a pr or b pr) and c pr)`},
		{`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
			`(userType eq "Employee" and (emails co "example.com" or emails.value co "example.org"))`},
		{`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`,
			`(userType ne "Employee" and not((emails co "example.com" or emails.value co "example.org")))`},
		{`not(a pr)`, `not(a pr)`},
		{`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`,
			`(emails[(type eq "work" and value co "@example.com")] or ims[(type eq "xmpp" and value co "@foo.com")])`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`,
			`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984"`},
		{`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d"`,
			`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d"`},
		{`userName eq "a \"quoted\" \\ name\u00e9"`, `userName eq "a \"quoted\" \\ nameé"`},
		{`userName eq "x" and userName eq ")"`, `(userName eq "x" and userName eq ")")`},
		{`members[value eq "2819c223"]`, `members[value eq "2819c223"]`},
		{`emails[not (type eq "work")]`, `emails[not(type eq "work")]`},
		{`groups.$ref pr`, `groups.$ref pr`},
	} {
		e, err := ParseFilter(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := Format(e); got != tc.want {
			t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, `expected an attribute, "not" or "(", found end of filter at position 1`},
		{`userName`, `expected an operator after "userName", found end of filter`},
		{`userName eq`, `expected a value`},
		{`userName eq bjensen`, `expected a value (a string in double quotes, a number, true, false or null) after "userName eq", found "bjensen" at position 13`},
		{`userName like "x"`, `unknown operator "like"`},
		{`userName eq "x" and`, `expected an attribute, "not" or "(", found end of filter`},
		{`userName eq "x" xor b pr`, `unexpected "xor" at position 17`},
		{`(userName eq "x"`, `expected ")", found end of filter`},
		{`userName eq "x")`, `unexpected ")"`},
		{`not userName pr`, `"not" must be followed by "(", not "userName"`},
		{`emails[type eq "work"`, `expected "]", found end of filter`},
		{`emails[type eq "work"]]`, `unexpected "]"`},
		{`emails[types[value pr]]`, `value filters cannot nest`},
		{`name.familyName[value pr]`, `a value filter applies to an attribute, not to the sub-attribute "name.familyName"`},
		{`userName eq "unterminated`, `unterminated string starting at position 13`},
		{`userName eq "bad \x escape"`, `invalid string at position 13`},
		{`1abc pr`, `"1abc" is not an attribute path`},
		{`a.b.c pr`, `"a.b.c" is not an attribute path`},
		{`foo:bar pr`, `"foo:bar" is not an attribute path (a schema prefix starts with urn:)`},
		{`x eq 1x`, `expected a value`},
		{`userName eq "x"; DROP TABLE users`, `"x"; DROP TABLE users`[0:0] + `unexpected`},
		{strings.Repeat("(", 40) + "a pr" + strings.Repeat(")", 40), "nests deeper than 32 levels"},
		{strings.Repeat("a pr or ", 300) + "a pr", "more than 256 comparisons"},
		{strings.Repeat("x", MaxFilterLength+1), "at most 4096 are accepted"},
	} {
		_, err := ParseFilter(tc.in)
		var se *Error
		if !errors.As(err, &se) || se.Status != 400 || se.ScimType != InvalidFilter || !strings.Contains(se.Detail, tc.want) {
			t.Errorf("%.60s: %v, want invalidFilter %q", tc.in, err, tc.want)
		}
	}
}
