// Package natsauth is the hub's NATS authority in operator mode: it holds
// the operator, system account and Flotilla account keys, signs the user
// JWTs of the hub and of each cluster, keeps the account's revocation list,
// and defines what each role may publish and subscribe (Permissions).
package natsauth
