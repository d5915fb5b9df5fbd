"""Layer decide. Pure decisions, no I/O: what to do with an object now (plan), where a round stands
(progress), what follows it (outcomes), the status built once (status), back-off, retention. They take the
time and the facts as arguments and return values; unit-tested exhaustively."""
