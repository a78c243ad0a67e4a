//! The Rust `Engine` and `TaskHooks` traits over Python objects. Callbacks run under the GIL the
//! caller of `sample` already holds. A Python exception cannot cross the trait (its methods return
//! `EngineError` or `bool`): the first one is kept here, the sampler sees an
//! `EngineError::Backend` (fatal: it releases what it holds and returns), and `sample` re-raises
//! the original exception. An instance of the `KvExhausted` class passed in is the engine's
//! recoverable `EngineError::KvExhausted` instead.

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use treepo_sampler::{
    DecodeParams as RsParams, Engine, EngineError, EngineNode, EntropyMode, InvalidNodeReason,
    SegmentEnd, SegmentOutput, SegmentRequest as RsRequest, TaskHooks,
};

use super::{DecodeParams, SegmentRequest};

/// The first Python exception raised by a callback, kept until `sample` returns.
#[derive(Default)]
pub struct FirstError(RefCell<Option<PyErr>>);

impl FirstError {
    fn keep(&self, e: PyErr) {
        let mut slot = self.0.borrow_mut();
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// The kept exception, if any.
    pub fn take(&self) -> Option<PyErr> {
        self.0.borrow_mut().take()
    }
}

/// A Python engine object (`prefill`, `fork`, `decode_segment`, `release`, optionally
/// `kv_pages_in_use`). Its node handles are any Python objects; the bridge mints one
/// `EngineNode` per handle (slots are never reused, so a stale handle is always detected).
pub struct PyEngine<'py> {
    obj: Bound<'py, PyAny>,
    kv_exhausted: Bound<'py, PyAny>,
    handles: Vec<Option<Bound<'py, PyAny>>>,
    /// The first exception a callback raised.
    pub error: FirstError,
}

impl<'py> PyEngine<'py> {
    /// Wraps `obj`; exceptions that are instances of `kv_exhausted` mean "pool exhausted".
    pub fn new(obj: Bound<'py, PyAny>, kv_exhausted: Bound<'py, PyAny>) -> Self {
        Self { obj, kv_exhausted, handles: Vec::new(), error: FirstError::default() }
    }

    fn py(&self) -> Python<'py> {
        self.obj.py()
    }

    fn mint(&mut self, handle: Bound<'py, PyAny>) -> Result<EngineNode, EngineError> {
        let index = u32::try_from(self.handles.len())
            .map_err(|_| EngineError::Backend("more than 2^32 engine nodes".into()))?;
        self.handles.push(Some(handle));
        Ok(EngineNode::new(index, 0))
    }

    fn handle(&self, node: EngineNode) -> Result<Bound<'py, PyAny>, EngineError> {
        match self.handles.get(node.index() as usize) {
            Some(Some(h)) if node.generation() == 0 => Ok(h.clone()),
            Some(None) => {
                Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Released })
            }
            _ => Err(EngineError::InvalidNode { node, reason: InvalidNodeReason::Unknown }),
        }
    }

    /// Turns a Python exception into the sampler's error, keeping it for re-raising.
    fn fail(&self, method: &str, e: PyErr) -> EngineError {
        let py = self.py();
        if e.is_instance(py, &self.kv_exhausted) {
            let field = |name: &str| {
                e.value(py).getattr(name).and_then(|v| v.extract::<usize>()).unwrap_or(0)
            };
            return EngineError::KvExhausted { requested: field("requested"), free: field("free") };
        }
        let msg = format!("engine.{method} raised {e}");
        self.error.keep(e);
        EngineError::Backend(msg)
    }

    /// Mints nodes for an iterable of handles returned by `method`.
    fn mint_all(
        &mut self,
        method: &str,
        got: &Bound<'py, PyAny>,
    ) -> Result<Vec<EngineNode>, EngineError> {
        let handles: Vec<Bound<'py, PyAny>> = match got.try_iter() {
            Ok(it) => it.collect::<PyResult<_>>().map_err(|e| self.fail(method, e))?,
            Err(e) => return Err(self.fail(method, contract(method, "a list of node handles", e))),
        };
        handles.into_iter().map(|h| self.mint(h)).collect()
    }

    fn output(&self, i: usize, item: &Bound<'py, PyAny>, stop: &[u32]) -> PyResult<SegmentOutput> {
        let get = |key: &str, pos: usize| -> PyResult<Option<Bound<'py, PyAny>>> {
            if let Ok(d) = item.cast::<PyDict>() {
                return d.get_item(key);
            }
            if let Ok(t) = item.cast::<PyTuple>() {
                return Ok(t.get_item(pos).ok());
            }
            if item.hasattr(key)? { Ok(Some(item.getattr(key)?)) } else { Ok(None) }
        };
        let field = |key: &str, pos: usize| -> PyResult<Bound<'py, PyAny>> {
            get(key, pos)?.ok_or_else(|| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "engine.decode_segment output {i} has no `{key}` (return objects or dicts with \
                     tokens, logprobs[, end, entropies], or (tokens, logprobs[, end]) tuples)"
                ))
            })
        };
        let ctx = |what: &'static str| {
            move |e: PyErr| contract("decode_segment", &format!("output {i}: {what}"), e)
        };
        let tokens: Vec<u32> =
            field("tokens", 0)?.extract().map_err(ctx("tokens must be token ids"))?;
        let logprobs: Vec<f32> =
            field("logprobs", 1)?.extract().map_err(ctx("logprobs must be floats"))?;
        let entropies: Option<Vec<f32>> = match get("entropies", 3)? {
            Some(v) if !v.is_none() => Some(v.extract().map_err(ctx("entropies must be floats"))?),
            _ => None,
        };
        let end = match get("end", 2)? {
            Some(v) if !v.is_none() => {
                let s: String = v.extract().map_err(ctx("end must be a str"))?;
                match s.as_str() {
                    "max_tokens" => SegmentEnd::MaxTokens,
                    "stop" => SegmentEnd::Stop,
                    "kv_exhausted" => SegmentEnd::KvExhausted,
                    other => {
                        return Err(pyo3::exceptions::PyValueError::new_err(format!(
                            "engine.decode_segment output {i}: end = {other:?}, expected \
                             'max_tokens', 'stop' or 'kv_exhausted'"
                        )));
                    }
                }
            }
            _ if tokens.last().is_some_and(|t| stop.binary_search(t).is_ok()) => SegmentEnd::Stop,
            _ => SegmentEnd::MaxTokens,
        };
        Ok(SegmentOutput { tokens, logprobs, entropies, end })
    }
}

/// A `TypeError` saying what a callback returned wrong, with the extraction error.
fn contract(method: &str, what: &str, e: PyErr) -> PyErr {
    pyo3::exceptions::PyTypeError::new_err(format!(
        "engine.{method} returned a bad value: {what} ({e})"
    ))
}

impl Engine for PyEngine<'_> {
    fn prefill(&mut self, prompts: &[&[u32]]) -> Result<Vec<EngineNode>, EngineError> {
        let lists: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
        let got =
            self.obj.call_method1("prefill", (lists,)).map_err(|e| self.fail("prefill", e))?;
        self.mint_all("prefill", &got)
    }

    fn fork(&mut self, node: EngineNode, n: usize) -> Result<Vec<EngineNode>, EngineError> {
        let handle = self.handle(node)?;
        let got = self.obj.call_method1("fork", (handle, n)).map_err(|e| self.fail("fork", e))?;
        self.mint_all("fork", &got)
    }

    fn decode_segment(
        &mut self,
        reqs: &[RsRequest],
        params: &RsParams,
    ) -> Result<Vec<SegmentOutput>, EngineError> {
        let py = self.py();
        let mut items = Vec::with_capacity(reqs.len());
        for r in reqs {
            let node = self.handle(r.node)?.unbind();
            let req = SegmentRequest {
                node,
                key: r.key,
                response_offset: r.response_offset,
                max_tokens: r.max_tokens,
            };
            items.push(Py::new(py, req).map_err(|e| self.fail("decode_segment", e))?);
        }
        let stop: Vec<u32> = params.stop.iter().copied().collect();
        let p = DecodeParams {
            stop: stop.clone(),
            temperature: params.sampling.temperature,
            top_k: params.sampling.top_k,
            top_p: params.sampling.top_p,
            entropy: params.entropy == EntropyMode::Compute,
        };
        let call = || -> PyResult<Vec<SegmentOutput>> {
            let list = PyList::new(py, items)?;
            let got = self.obj.call_method1("decode_segment", (list, Py::new(py, p)?))?;
            let outs: Vec<Bound<'_, PyAny>> = got
                .try_iter()
                .map_err(|e| contract("decode_segment", "a list of outputs", e))?
                .collect::<PyResult<_>>()?;
            outs.iter().enumerate().map(|(i, o)| self.output(i, o, &stop)).collect()
        };
        call().map_err(|e| self.fail("decode_segment", e))
    }

    fn release(&mut self, node: EngineNode) -> Result<(), EngineError> {
        let handle = self.handle(node)?;
        if let Some(slot) = self.handles.get_mut(node.index() as usize) {
            *slot = None;
        }
        self.obj.call_method1("release", (handle,)).map_err(|e| self.fail("release", e))?;
        Ok(())
    }

    fn kv_pages_in_use(&self) -> usize {
        match self.obj.getattr("kv_pages_in_use") {
            Ok(f) => match f.call0().and_then(|v| v.extract::<usize>()) {
                Ok(n) => n,
                Err(e) => {
                    self.error.keep(e);
                    0
                }
            },
            Err(_) => 0,
        }
    }
}

/// Task hooks from two optional Python callables taking a segment (a list of token ids).
pub struct PyHooks<'py> {
    /// `has_answer(segment) -> bool`.
    pub has_answer: Option<Bound<'py, PyAny>>,
    /// `is_repetition(segment) -> bool`.
    pub is_repetition: Option<Bound<'py, PyAny>>,
    /// The first exception a hook raised (the hook then answers `False`).
    pub error: FirstError,
}

impl PyHooks<'_> {
    fn ask(&self, f: Option<&Bound<'_, PyAny>>, segment: &[u32]) -> bool {
        let Some(f) = f else { return false };
        match f.call1((segment.to_vec(),)).and_then(|v| v.is_truthy()) {
            Ok(b) => b,
            Err(e) => {
                self.error.keep(e);
                false
            }
        }
    }
}

impl TaskHooks for &PyHooks<'_> {
    fn has_answer(&self, segment: &[u32]) -> bool {
        self.ask(self.has_answer.as_ref(), segment)
    }
    fn is_repetition(&self, segment: &[u32]) -> bool {
        self.ask(self.is_repetition.as_ref(), segment)
    }
}
