//! Execution of a parsed template (`text/template`'s `exec.go`), `missingkey=error`.

use super::funcs::{self, Ty};
use super::gofmt;
use super::parse::{Arg, Branch, Command, Defines, Node, Pipe};

/// How deep `{{template}}` calls may nest (Go allows 100000; its stacks grow, ours do not).
const MAX_DEPTH: usize = 100;
use super::{NAME, Random, Value};

pub(super) enum Flow {
    Err(String),
    Break,
    Continue,
}

type R<T> = Result<T, Flow>;

pub(super) struct State<'a> {
    text: &'a str,
    defines: &'a Defines,
    depth: usize,
    vars: Vec<(String, Value)>,
    out: String,
    pub(super) random: Random<'a>,
}

pub(super) fn execute(
    text: &str,
    nodes: &[Node],
    defines: &Defines,
    data: &Value,
    random: Random<'_>,
) -> Result<String, String> {
    let mut s = State {
        text,
        defines,
        depth: 0,
        vars: vec![("$".into(), data.clone())],
        out: String::new(),
        random,
    };
    match s.walk(data, nodes) {
        Ok(()) => Ok(s.out),
        Err(Flow::Err(e)) => Err(e),
        Err(Flow::Break | Flow::Continue) => {
            Err(format!("template: {NAME}: break or continue outside range"))
        }
    }
}

/// Go's `isTrue`.
pub(super) fn truth(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) | Value::Int64(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::StrList(l) => !l.is_empty(),
        Value::Map(m) => !m.borrow().is_empty(),
        Value::StrMap { entries, .. } => !entries.is_empty(),
        Value::Struct { .. } => true,
    }
}

impl State<'_> {
    fn errorf(&self, pos: usize, context: &str, msg: &str) -> Flow {
        let before = &self.text[..pos.min(self.text.len())];
        let line = 1 + before.matches('\n').count();
        let col = match before.rfind('\n') {
            Some(nl) => pos - (nl + 1),
            None => pos,
        };
        Flow::Err(format!(
            "template: {NAME}:{line}:{col}: executing \"{NAME}\" at <{context}>: {msg}"
        ))
    }

    fn walk(&mut self, dot: &Value, nodes: &[Node]) -> R<()> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(pipe) => {
                    let mark = self.vars.len();
                    let v = self.eval_pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.out.push_str(&print_value(&v));
                    } else {
                        // Declared variables live to the end of the enclosing list.
                        let _ = mark;
                    }
                }
                Node::If(b) => self.walk_if_with(dot, b, false)?,
                Node::With(b) => self.walk_if_with(dot, b, true)?,
                Node::Range(b) => self.walk_range(dot, b)?,
                Node::Template {
                    pos,
                    name_pos,
                    name,
                    pipe,
                } => {
                    let new_dot = match pipe {
                        Some(p) => {
                            let mark = self.vars.len();
                            let v = self.eval_pipeline(dot, p)?;
                            self.vars.truncate(mark);
                            v
                        }
                        None => Value::Nil,
                    };
                    let ctx = format!("{{{{template {}}}}}", gofmt::quote(name));
                    let defines = self.defines;
                    let Some(body) = defines.get(name) else {
                        return Err(self.errorf(
                            *name_pos,
                            &ctx,
                            &format!("template {} not defined", gofmt::quote(name)),
                        ));
                    };
                    if self.depth >= MAX_DEPTH {
                        return Err(self.errorf(
                            *pos,
                            &ctx,
                            &format!("exceeded maximum template depth ({MAX_DEPTH})"),
                        ));
                    }
                    let saved =
                        std::mem::replace(&mut self.vars, vec![("$".into(), new_dot.clone())]);
                    self.depth += 1;
                    let r = self.walk(&new_dot, body);
                    self.depth -= 1;
                    self.vars = saved;
                    r?;
                }
                Node::Break(_) => return Err(Flow::Break),
                Node::Continue(_) => return Err(Flow::Continue),
            }
        }
        Ok(())
    }

    fn walk_if_with(&mut self, dot: &Value, b: &Branch, with: bool) -> R<()> {
        let mark = self.vars.len();
        let v = self.eval_pipeline(dot, &b.pipe)?;
        let r = if truth(&v) {
            if with {
                self.walk(&v, &b.list)
            } else {
                self.walk(dot, &b.list)
            }
        } else if let Some(e) = &b.else_list {
            self.walk(dot, e)
        } else {
            Ok(())
        };
        self.vars.truncate(mark);
        r
    }

    fn walk_range(&mut self, dot: &Value, b: &Branch) -> R<()> {
        let mark = self.vars.len();
        let val = self.eval_pipeline_value(dot, &b.pipe)?;
        let items: Vec<(Value, Value)> = match &val {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (int(i), v.clone()))
                .collect(),
            Value::StrList(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (int(i), Value::Str(v.clone())))
                .collect(),
            Value::Map(m) => m
                .borrow()
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::StrMap { entries, .. } => entries
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                .collect(),
            Value::Int(n) | Value::Int64(n) => {
                if b.pipe.decl.len() > 1 {
                    return Err(self.errorf(
                        b.pos,
                        &format!("range {}", b.pipe),
                        &format!("can't use {n} to iterate over more than one variable"),
                    ));
                }
                let ty = val.clone();
                (0..*n)
                    .map(|i| {
                        let v = match ty {
                            Value::Int64(_) => Value::Int64(i),
                            _ => Value::Int(i),
                        };
                        (Value::Nil, v)
                    })
                    .collect()
            }
            Value::Nil => Vec::new(),
            other => {
                let (at, ctx) = pipe_last_node(&b.pipe).unwrap_or((b.pos, b.pipe.to_string()));
                return Err(self.errorf(
                    at,
                    &ctx,
                    &format!("range can't iterate over {}", gofmt::value_string(other)),
                ));
            }
        };
        let mut result = Ok(());
        if items.is_empty() {
            if let Some(e) = &b.else_list {
                result = self.walk(dot, e);
            }
        } else {
            for (index, elem) in items {
                let inner = self.vars.len();
                match b.pipe.decl.len() {
                    0 => {}
                    1 => self.assign_or_push(&b.pipe, 0, elem.clone()),
                    _ => {
                        self.assign_or_push(&b.pipe, 0, index);
                        self.assign_or_push(&b.pipe, 1, elem.clone());
                    }
                }
                let r = self.walk(&elem, &b.list);
                self.vars.truncate(inner);
                match r {
                    Ok(()) | Err(Flow::Continue) => {}
                    Err(Flow::Break) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        self.vars.truncate(mark);
        result
    }

    fn assign_or_push(&mut self, pipe: &Pipe, i: usize, v: Value) {
        let name = &pipe.decl[i];
        if pipe.is_assign {
            self.set_var(name, v);
        } else {
            self.vars.push((name.clone(), v));
        }
    }

    fn set_var(&mut self, name: &str, v: Value) {
        if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            slot.1 = v;
        }
    }

    /// A pipeline's value, without declaring its variables.
    fn eval_pipeline_value(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let mut final_: Option<Value> = None;
        for cmd in &pipe.cmds {
            let v = self.eval_command(dot, cmd, final_.take())?;
            final_ = Some(v);
        }
        Ok(final_.unwrap_or(Value::Nil))
    }

    fn eval_pipeline(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let v = self.eval_pipeline_value(dot, pipe)?;
        for name in &pipe.decl {
            if pipe.is_assign {
                self.set_var(name, v.clone());
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn not_a_function(&self, cmd: &Command, final_: &Option<Value>) -> R<()> {
        if cmd.args.len() > 1 || final_.is_some() {
            return Err(self.errorf(
                cmd.args[0].pos(),
                &cmd.args[0].to_string(),
                &format!("can't give argument to non-function {}", cmd.args[0]),
            ));
        }
        Ok(())
    }

    fn eval_command(&mut self, dot: &Value, cmd: &Command, final_: Option<Value>) -> R<Value> {
        let first = &cmd.args[0];
        match first {
            Arg::Field { pos, chain } => {
                self.eval_field_chain(*pos, first, dot, chain, &cmd.args, final_)
            }
            Arg::Var { pos, name, chain } => {
                let v = self.var(*pos, name)?;
                if chain.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return Ok(v);
                }
                self.eval_field_chain(*pos, first, &v, chain, &cmd.args, final_)
            }
            Arg::Pipe { pos, pipe, chain } => {
                if chain.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return self.eval_pipeline_scoped(dot, pipe);
                }
                let v = self.eval_pipeline_scoped(dot, pipe)?;
                self.eval_field_chain(*pos, first, &v, chain, &cmd.args, final_)
            }
            Arg::Ident { pos, name } => self.call(dot, *pos, name, &cmd.args[1..], final_, cmd),
            Arg::Dot(_) => {
                self.not_a_function(cmd, &final_)?;
                Ok(dot.clone())
            }
            Arg::Bool { value, .. } => {
                self.not_a_function(cmd, &final_)?;
                Ok(Value::Bool(*value))
            }
            Arg::Str { text, .. } => {
                self.not_a_function(cmd, &final_)?;
                Ok(Value::Str(text.clone()))
            }
            Arg::Num { num, .. } => {
                self.not_a_function(cmd, &final_)?;
                Ok(ideal(num))
            }
            Arg::Nil(pos) => {
                self.not_a_function(cmd, &final_)?;
                Err(self.errorf(*pos, "nil", "nil is not a command"))
            }
        }
    }

    fn eval_pipeline_scoped(&mut self, dot: &Value, pipe: &Pipe) -> R<Value> {
        let mark = self.vars.len();
        let v = self.eval_pipeline(dot, pipe);
        if !pipe.is_assign {
            self.vars.truncate(mark);
        }
        v
    }

    fn var(&self, pos: usize, name: &str) -> R<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.errorf(pos, name, &format!("undefined variable: {name}")))
    }

    fn eval_field_chain(
        &mut self,
        pos: usize,
        node: &Arg,
        receiver: &Value,
        chain: &[String],
        args: &[Arg],
        final_: Option<Value>,
    ) -> R<Value> {
        let ctx = node.to_string();
        let mut v = receiver.clone();
        let n = chain.len();
        for (i, name) in chain.iter().enumerate() {
            let has_args = i + 1 == n && (args.len() > 1 || final_.is_some());
            v = self.eval_field(pos, &ctx, name, &v, has_args)?;
        }
        Ok(v)
    }

    fn eval_field(
        &self,
        pos: usize,
        ctx: &str,
        name: &str,
        receiver: &Value,
        has_args: bool,
    ) -> R<Value> {
        match receiver {
            Value::Nil => Err(self.errorf(
                pos,
                ctx,
                &format!("nil data; no entry for key {}", gofmt::quote(name)),
            )),
            Value::Struct { type_name, fields } => match fields.iter().find(|(f, _)| f == name) {
                Some((_, v)) => {
                    if has_args {
                        return Err(self.errorf(
                            pos,
                            ctx,
                            &format!("{name} has arguments but cannot be invoked as function"),
                        ));
                    }
                    Ok(v.clone())
                }
                None => Err(self.errorf(
                    pos,
                    ctx,
                    &format!("can't evaluate field {name} in type {type_name}"),
                )),
            },
            Value::Map(_) | Value::StrMap { .. } => {
                if has_args {
                    return Err(self.errorf(
                        pos,
                        ctx,
                        &format!("{name} is not a method but has arguments"),
                    ));
                }
                let found = match receiver {
                    Value::Map(m) => m.borrow().get(name).cloned(),
                    Value::StrMap { entries, .. } => {
                        entries.get(name).map(|s| Value::Str(s.clone()))
                    }
                    _ => None,
                };
                found.ok_or_else(|| {
                    self.errorf(
                        pos,
                        ctx,
                        &format!("map has no entry for key {}", gofmt::quote(name)),
                    )
                })
            }
            other => Err(self.errorf(
                pos,
                ctx,
                &format!("can't evaluate field {name} in type {}", other.type_name()),
            )),
        }
    }

    /// The value of an argument, converted to the parameter type `ty` as Go's `evalArg`.
    fn eval_arg(&mut self, dot: &Value, arg: &Arg, ty: Ty) -> R<Value> {
        let pos = arg.pos();
        let ctx = arg.to_string();
        match arg {
            Arg::Field { .. } | Arg::Var { .. } | Arg::Pipe { .. } | Arg::Dot(_) => {
                let v = match arg {
                    Arg::Field { chain, .. } => {
                        self.eval_field_chain(pos, arg, dot, chain, &[], None)?
                    }
                    Arg::Var { name, chain, .. } => {
                        let v = self.var(pos, name)?;
                        self.eval_field_chain(pos, arg, &v, chain, &[], None)?
                    }
                    Arg::Pipe { pipe, chain, .. } => {
                        let v = self.eval_pipeline_scoped(dot, pipe)?;
                        self.eval_field_chain(pos, arg, &v, chain, &[], None)?
                    }
                    _ => dot.clone(),
                };
                self.validate(pos, &ctx, v, ty)
            }
            Arg::Ident { name, .. } => {
                let cmd = Command {
                    pos,
                    args: vec![arg.clone()],
                };
                let v = self.call(dot, pos, name, &[], None, &cmd)?;
                self.validate(pos, &ctx, v, ty)
            }
            Arg::Nil(_) => match ty {
                Ty::Any => Ok(Value::Nil),
                Ty::Map => Ok(Value::map(Default::default())),
                _ => Err(self.errorf(pos, &ctx, &format!("cannot assign nil to {}", ty.name()))),
            },
            Arg::Bool { value, .. } => match ty {
                Ty::Bool | Ty::Any => Ok(Value::Bool(*value)),
                _ => Err(self.const_mismatch(pos, &ctx, ty)),
            },
            Arg::Str { text, .. } => match ty {
                Ty::Str | Ty::Any => Ok(Value::Str(text.clone())),
                _ => Err(self.const_mismatch(pos, &ctx, ty)),
            },
            Arg::Num { num, .. } => match ty {
                Ty::Int => num
                    .int
                    .map(Value::Int)
                    .ok_or_else(|| self.const_mismatch(pos, &ctx, ty)),
                Ty::Any => Ok(ideal(num)),
                _ => Err(self.const_mismatch(pos, &ctx, ty)),
            },
        }
    }

    fn const_mismatch(&self, pos: usize, ctx: &str, ty: Ty) -> Flow {
        let msg = match ty {
            Ty::Str => format!("expected string; found {ctx}"),
            Ty::Int => format!("expected integer; found {ctx}"),
            Ty::Bool => format!("expected bool; found {ctx}"),
            _ => format!("can't handle {ctx} for arg of type {}", ty.name()),
        };
        self.errorf(pos, ctx, &msg)
    }

    /// Go's `validateType`.
    fn validate(&self, pos: usize, ctx: &str, v: Value, ty: Ty) -> R<Value> {
        let ok = match (&v, ty) {
            (_, Ty::Any) => true,
            (Value::Nil, Ty::Map) => return Ok(Value::map(Default::default())),
            (Value::Nil, _) => {
                return Err(self.errorf(
                    pos,
                    ctx,
                    &format!("invalid value; expected {}", ty.name()),
                ));
            }
            (Value::Str(_), Ty::Str)
            | (Value::Int(_), Ty::Int)
            | (Value::Bool(_), Ty::Bool)
            | (Value::Map(_), Ty::Map) => true,
            _ => false,
        };
        if ok {
            Ok(v)
        } else {
            Err(self.errorf(
                pos,
                ctx,
                &format!(
                    "wrong type for value; expected {}; got {}",
                    ty.name(),
                    v.type_name()
                ),
            ))
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        pos: usize,
        name: &str,
        args: &[Arg],
        final_: Option<Value>,
        cmd: &Command,
    ) -> R<Value> {
        let ctx = cmd.to_string();
        // and/or evaluate their arguments lazily, stopping at the deciding one.
        if name == "and" || name == "or" {
            let n = args.len() + usize::from(final_.is_some());
            if n < 1 {
                return Err(self.errorf(
                    pos,
                    name,
                    &format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.eval_arg(dot, a, Ty::Any)?;
                if truth(&last) == (name == "or") {
                    return Ok(last);
                }
            }
            if let Some(f) = final_ {
                last = f;
            }
            return Ok(last);
        }
        let Some(f) = funcs::lookup(name) else {
            return Err(self.errorf(pos, name, &format!("{name:?} is not a defined function")));
        };
        let num_in = args.len() + usize::from(final_.is_some());
        let fixed = f.params.len();
        if f.variadic.is_some() {
            if num_in < fixed {
                return Err(self.errorf(
                    pos,
                    name,
                    &format!(
                        "wrong number of args for {name}: want at least {fixed} got {}",
                        args.len()
                    ),
                ));
            }
        } else if num_in != fixed {
            return Err(self.errorf(
                pos,
                name,
                &format!("wrong number of args for {name}: want {fixed} got {num_in}"),
            ));
        }
        let ty_at = |i: usize| -> Ty {
            if i < fixed {
                f.params[i]
            } else {
                f.variadic.unwrap_or(Ty::Any)
            }
        };
        let mut argv = Vec::with_capacity(num_in);
        for (i, a) in args.iter().enumerate() {
            argv.push(self.eval_arg(dot, a, ty_at(i))?);
        }
        if let Some(fv) = final_ {
            let ty = ty_at(argv.len());
            // Go reports a bad piped value at the node it evaluated last.
            let (at, at_ctx) = match args.last() {
                Some(a) => last_node(a),
                None => (pos, name.to_string()),
            };
            argv.push(self.validate(at, &at_ctx, fv, ty)?);
        }
        (f.call)(self, argv)
            .map_err(|e| self.errorf(pos, &ctx, &format!("error calling {name}: {e}")))
    }
}

/// The node Go's executor last positioned itself at after evaluating `arg`.
fn last_node(arg: &Arg) -> (usize, String) {
    match arg {
        Arg::Pipe { pipe, chain, .. } if chain.is_empty() => {
            pipe_last_node(pipe).unwrap_or((arg.pos(), arg.to_string()))
        }
        other => (other.pos(), other.to_string()),
    }
}

/// The node Go's executor last positioned itself at after evaluating `pipe`.
fn pipe_last_node(pipe: &Pipe) -> Option<(usize, String)> {
    let cmd = pipe.cmds.last()?;
    Some(match cmd.args.as_slice() {
        [Arg::Ident { .. }, .., last] => last_node(last),
        [first, ..] => last_node(first),
        [] => return None,
    })
}

fn int(i: usize) -> Value {
    Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
}

/// Go's `idealConstant` for a number literal with no type context.
fn ideal(n: &super::parse::Number) -> Value {
    if n.ideal_is_float() {
        Value::Float(n.float.unwrap_or_default())
    } else if let Some(i) = n.int {
        Value::Int(i)
    } else {
        Value::Float(n.float.unwrap_or_default())
    }
}

/// `fmt.Fprint` of a pipeline's value as an action prints it.
fn print_value(v: &Value) -> String {
    match v {
        Value::Nil => "<no value>".into(),
        other => gofmt::value_string(other),
    }
}
