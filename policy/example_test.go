package policy_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/readthrough/readthrough/policy"
)

// A policy file lets operators override, per route pattern, the policies
// declared in Go. policy.Load reads one from a path; Parse takes its
// contents. Give the result to httpcache.WithPolicyFile, which applies it
// to every route declared afterwards as File.Apply does here.
func ExampleParse() {
	f, err := policy.Parse([]byte(`{
		"/users/{id}/posts": {"ttl": "30s", "stale_if_error": "1h"},
		"GET /items/{id}":   {"ttl": "5m", "vary": ["Accept-Language"]}
	}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(f.Patterns())

	declared := policy.Policy{TTL: time.Minute, QueryParams: []string{"page"}}
	p, found, err := f.Apply("/users/{id}/posts", declared)
	if err != nil {
		panic(err)
	}
	fmt.Println(found, p.TTL, p.StaleIfError, p.QueryParams) // keys absent from the file keep their declared values

	_, err = policy.Parse([]byte(`{"/users/{id}": {"tll": "30s"}}`)) // a typo is an error, not a silent default
	fmt.Println(err)
	// Output:
	// [/users/{id}/posts GET /items/{id}]
	// true 30s 1h0m0s [page]
	// policy: route "/users/{id}": json: unknown field "tll"
}

// Validate reports every invalid field, each as a *policy.FieldError.
// Zero fields are valid: they mean the default.
func ExamplePolicy_Validate() {
	p := policy.Policy{TTL: -time.Second, RefreshAhead: 0.8, XFetchBeta: 1}
	err := p.Validate()
	fmt.Println(err)
	var fe *policy.FieldError
	if errors.As(err, &fe) {
		fmt.Println("first:", fe.Field)
	}
	// Output:
	// policy: TTL: must not be negative, got -1s
	// policy: XFetchBeta: cannot be combined with RefreshAhead; choose one
	// first: TTL
}
