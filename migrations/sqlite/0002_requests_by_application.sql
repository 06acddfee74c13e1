-- Idempotency records by the application their stored outcome is: erasing an application deletes its
-- records through these entries instead of reading every record of the idempotency window, once per
-- erased application and holding the write lock. Outcomes are the gateway's own JSON; error outcomes and
-- unfinished records have no application and index as NULL.
CREATE INDEX requests_by_application ON requests (json_extract(outcome, '$.application.id'));
