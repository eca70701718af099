package keying_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/readthrough/readthrough/keying"
	"github.com/readthrough/readthrough/policy"
)

// A route is compiled once, where it is declared; Key then gives each
// request the bucket (one Redis hash: user 15's posts, purged together)
// and the field (its variant in the bucket). Here the page is part of the
// key and other query parameters are not.
func ExampleCompile() {
	rt, err := keying.Compile("GET /users/{id}/posts", policy.Policy{QueryParams: []string{"page"}})
	if err != nil {
		panic(err)
	}
	key := func(target string) keying.Key {
		r := httptest.NewRequest("GET", target, nil)
		rt.Match(r) // sets the path values, as the router does
		k, err := rt.Key(r)
		if err != nil {
			panic(err)
		}
		return k
	}
	page2 := key("/users/15/posts?page=2")
	tracked := key("/users/15/posts?page=2&utm_source=mail")
	page3 := key("/users/15/posts?page=3")
	fmt.Println(page2.Bucket)
	fmt.Println("same bucket:", page2.Bucket == page3.Bucket)
	fmt.Println("same field, utm_source ignored:", page2.Field == tracked.Field)
	fmt.Println("same field, other page:", page2.Field == page3.Field)
	// Output:
	// GET /users/%7Bid%7D/posts|15
	// same bucket: true
	// same field, utm_source ignored: true
	// same field, other page: false
}
