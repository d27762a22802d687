"""Each published year to the city's "双随机、一公开" platform, exactly once: batches queued at
publication (`outbox`), the platform behind one interface (`platform`), the run (`delivery`)."""
