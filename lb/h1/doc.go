// Package h1 is the balancer's hand-written HTTP/1.1: the front Server
// that reads clients' requests, and the Client that sends requests to a
// backend and reads its answers, over connections kept in an idle pool.
// It holds the code whose mistakes would be a proxy's worst (one client's
// answer reaching another, a request smuggled past the balancer), in one
// place, apart from the balancing in package lb.
package h1
