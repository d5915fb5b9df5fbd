"""Layer album. The album service's side: the client that creates FileCleanups, the command line, the outbox
and its relay. The top layer beside controller; it never imports the operator's wiring."""
