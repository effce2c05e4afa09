"""SMS providers behind one interface (:class:`sms_gateway.providers.base.Provider`)."""
