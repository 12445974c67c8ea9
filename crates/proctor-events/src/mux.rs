//! Merging streams by route code, and splitting them again.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;

use proctor_subunit::{Event, EventReader};

use crate::{Sink, SinkError};

/// Prefixes every event's route code with a label before passing it on: what
/// a multiplexer does to each of its inputs (`3` on input `0` becomes `0/3`).
pub struct RoutePrefix<S> {
    label: String,
    inner: S,
}

impl<S: Sink> RoutePrefix<S> {
    /// Labels events with `label` on their way to `inner`.
    pub fn new(label: impl Into<String>, inner: S) -> RoutePrefix<S> {
        RoutePrefix {
            label: label.into(),
            inner,
        }
    }
}

impl<S: Sink> Sink for RoutePrefix<S> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut event = event.clone();
        event.prefix_route(&self.label);
        self.inner.event(&event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }
}

/// How many decoded events an input may run ahead of the sink.
const CHANNEL_DEPTH: usize = 256;

/// Merges several input streams into `sink` live: each input is decoded on
/// its own thread and its events are passed on as they arrive (never a whole
/// test at a time), labelled with the input's label as a route prefix. An
/// input that fails to read ends early; the first such error is returned
/// once every input has finished. `sink.finish()` is called at the end.
pub fn multiplex<R>(inputs: Vec<(String, R)>, sink: &mut dyn Sink) -> Result<(), SinkError>
where
    R: Read + Send + 'static,
{
    let (sender, receiver) = mpsc::sync_channel::<io::Result<Event>>(CHANNEL_DEPTH);
    let readers: Vec<_> = inputs
        .into_iter()
        .map(|(label, input)| {
            let sender = sender.clone();
            thread::spawn(move || {
                for event in EventReader::new(input) {
                    let labelled = event.map(|mut event| {
                        event.prefix_route(&label);
                        event
                    });
                    let failed = labelled.is_err();
                    if sender.send(labelled).is_err() || failed {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(sender);
    let mut first_error = None;
    loop {
        let received = match receiver.try_recv() {
            Ok(received) => received,
            Err(mpsc::TryRecvError::Empty) => {
                // Every input is waiting: let downstream see what we have.
                sink.flush()?;
                match receiver.recv() {
                    Ok(received) => received,
                    Err(mpsc::RecvError) => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        match received {
            Ok(event) => sink.event(&event)?,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    for reader in readers {
        // A reader thread only panics if decoding panics, which it must not.
        reader
            .join()
            .map_err(|_| io::Error::other("input reader panicked"))?;
    }
    sink.finish()?;
    first_error.map_or(Ok(()), |error| Err(error.into()))
}

type SinkFactory<'a> = Box<dyn FnMut(&str) -> Box<dyn Sink + 'a> + 'a>;

/// Splits a stream by the first part of its route code, sending each part's
/// events to its own sink with that part removed (`0/3` reaches sink `0` as
/// `3`; `0` reaches it with no route). Events with no route code go to the
/// sink for the empty label.
pub struct RouteDemux<'a> {
    make_sink: SinkFactory<'a>,
    sinks: BTreeMap<String, Box<dyn Sink + 'a>>,
}

impl<'a> RouteDemux<'a> {
    /// A demultiplexer that makes a sink for each new label with `make_sink`.
    pub fn new(make_sink: impl FnMut(&str) -> Box<dyn Sink + 'a> + 'a) -> RouteDemux<'a> {
        RouteDemux {
            make_sink: Box::new(make_sink),
            sinks: BTreeMap::new(),
        }
    }

    /// The labels seen so far.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.sinks.keys().map(String::as_str)
    }
}

impl Sink for RouteDemux<'_> {
    fn event(&mut self, event: &Event) -> Result<(), SinkError> {
        let mut event = event.clone();
        let (label, rest) = match event.route_code.take() {
            None => (String::new(), None),
            Some(route) => match route.split_once('/') {
                Some((label, rest)) => (label.to_owned(), Some(rest.to_owned())),
                None => (route, None),
            },
        };
        event.route_code = rest;
        let sink = match self.sinks.entry(label) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let sink = (self.make_sink)(entry.key());
                entry.insert(sink)
            }
        };
        sink.event(&event)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.sinks.values_mut().try_for_each(|sink| sink.flush())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.sinks.values_mut().try_for_each(|sink| sink.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use proctor_subunit::{encode, Status};

    use super::*;
    use crate::Collect;

    fn stream(events: &[Event]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for event in events {
            encode(event, &mut bytes).expect("encodes");
        }
        bytes
    }

    #[test]
    fn multiplex_labels_each_input() {
        let first = stream(&[Event::test("a", Status::Success)]);
        let second = stream(&[Event::test("b", Status::Fail).routed("3")]);
        let mut sink = Collect::default();
        let inputs = vec![
            ("0".to_owned(), io::Cursor::new(first)),
            ("1".to_owned(), io::Cursor::new(second)),
        ];
        multiplex(inputs, &mut sink).expect("merges");
        let mut routes: Vec<_> = sink
            .events
            .iter()
            .map(|e| (e.test_id.clone(), e.route_code.clone()))
            .collect();
        routes.sort();
        assert_eq!(
            routes,
            vec![
                (Some("a".into()), Some("0".into())),
                (Some("b".into()), Some("1/3".into()))
            ]
        );
    }

    /// A reader that yields its bytes, then fails (a disconnected pipe).
    struct FailsAfter(io::Cursor<Vec<u8>>);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                )),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn multiplex_keeps_other_inputs_when_one_fails_mid_stream() {
        let broken = stream(&[Event::test("a", Status::InProgress)]);
        let healthy = stream(&[
            Event::test("b", Status::InProgress),
            Event::test("b", Status::Success),
        ]);
        let mut sink = Collect::default();
        let inputs = vec![
            ("0".to_owned(), FailsAfter(io::Cursor::new(broken))),
            ("1".to_owned(), FailsAfter(io::Cursor::new(Vec::new()))),
            ("2".to_owned(), FailsAfter(io::Cursor::new(healthy))),
        ];
        let error = multiplex(inputs, &mut sink).expect_err("an input failed");
        assert!(error.to_string().contains("peer went away"), "{error}");
        let seen: Vec<_> = sink
            .events
            .iter()
            .map(|e| (e.test_id.clone().unwrap_or_default(), e.status))
            .collect();
        // Everything read before the failures got through, from every input.
        assert!(seen.contains(&("a".to_owned(), Some(Status::InProgress))));
        assert!(seen.contains(&("b".to_owned(), Some(Status::Success))));
    }

    #[test]
    fn demux_strips_the_first_route_part() {
        type Seen = Rc<RefCell<Vec<(String, Option<String>)>>>;
        let seen: Seen = Rc::default();
        struct Record(String, Seen);
        impl Sink for Record {
            fn event(&mut self, event: &Event) -> Result<(), SinkError> {
                self.1
                    .borrow_mut()
                    .push((self.0.clone(), event.route_code.clone()));
                Ok(())
            }
        }
        let mut demux = {
            let seen = seen.clone();
            RouteDemux::new(move |label| Box::new(Record(label.to_owned(), seen.clone())))
        };
        for route in [Some("0/3"), Some("1"), None, Some("0")] {
            let mut event = Event::test("t", Status::Success);
            event.route_code = route.map(str::to_owned);
            demux.event(&event).expect("routes");
        }
        assert_eq!(
            seen.borrow().clone(),
            vec![
                ("0".into(), Some("3".into())),
                ("1".into(), None),
                (String::new(), None),
                ("0".into(), None)
            ]
        );
        assert_eq!(demux.labels().collect::<Vec<_>>(), vec!["", "0", "1"]);
    }
}
